-- 0002: the folder tree of every account, group membership, folder rights
-- (RFC 4314), the per-account change sequence and tombstones.
--
-- DESIGN §4: one typed folder tree per account; IMAP, DAV, ActiveSync and the
-- admin API are views of it. Every change of an account's data takes the
-- next value of accounts.modseq (storage/changes.h); deletions leave a
-- tombstone carrying that value, so a client that last synchronised at
-- modseq X asks "what changed or vanished since X" and nothing else.
--
-- Text that names things uses the "C" collation, as in 0001: comparisons,
-- lower() and ORDER BY then mean the same on every database whatever locale
-- it was created with, and the indexes built on them never change meaning
-- under a libc upgrade. The price: case-insensitive comparisons fold ASCII
-- letters only.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

-- The account's change sequence (storage/changes.c). UPDATE ... SET modseq =
-- modseq + 1 RETURNING modseq takes the next value; the row lock it holds
-- until commit serialises the changes of one account.
ALTER TABLE accounts ADD COLUMN modseq bigint NOT NULL DEFAULT 0 CHECK (modseq >= 0);
-- The last UIDVALIDITY handed to a folder of this account; the next one is
-- greater (RFC 3501 §2.3.1.1: a folder re-created under an old name must get
-- a new UIDVALIDITY). Bounded by the 32 bits IMAP allows.
ALTER TABLE accounts ADD COLUMN uidvalidity_last bigint NOT NULL DEFAULT 0
    CHECK (uidvalidity_last BETWEEN 0 AND 4294967295);
-- Tombstones up to this modseq may have been purged: a client whose state is
-- older cannot be told everything that vanished and must resynchronise.
ALTER TABLE accounts ADD COLUMN tombstones_purged_modseq bigint NOT NULL DEFAULT 0;

-- (id, kind) is unique because id is; the index exists so group_members can
-- require with a foreign key that a group is an account of kind 'group'.
CREATE UNIQUE INDEX accounts_id_kind ON accounts (id, kind);

-- A folder of an account: mail or one of the groupware kinds. path is the
-- "/"-joined chain of names from the top, kept in step with parent_id and
-- name by storage/folders.c (and checked below for the last segment), so a
-- path lookup is one index probe.
CREATE TABLE folders (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    parent_id      bigint REFERENCES folders (id) ON DELETE CASCADE,
    -- one path segment: UTF-8 display name, 1..255 bytes, no '/', no
    -- control characters, not "." or ".." (DAV exposes the tree as URLs)
    name           text COLLATE "C" NOT NULL
                   CHECK (octet_length(name) BETWEEN 1 AND 255
                          AND strpos(name, '/') = 0
                          AND name !~ '[\x01-\x1f\x7f]'
                          AND name NOT IN ('.', '..')),
    path           text COLLATE "C" NOT NULL
                   CHECK (octet_length(path) BETWEEN 1 AND 1023
                          AND cardinality(string_to_array(path, '/')) <= 64),
    kind           text NOT NULL
                   CHECK (kind IN ('mail', 'events', 'contacts', 'tasks', 'notes', 'journal',
                                   'files')),
    -- the stable meaning of a default folder, independent of its display name
    role           text
                   CHECK (role IN ('inbox', 'drafts', 'sent', 'trash', 'junk', 'archive',
                                   'events', 'contacts', 'tasks', 'notes', 'journal', 'files')),
    -- RFC 3501 §2.3.1.1, a nonzero 32-bit number (see accounts.uidvalidity_last)
    uidvalidity    bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    uidnext        bigint NOT NULL DEFAULT 1 CHECK (uidnext >= 1),
    -- the account modseq of the last change to this folder or its content
    highest_modseq bigint NOT NULL DEFAULT 0,
    -- true: the folder's rights are those of its parent (none at the top)
    acl_inherit    boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- a mail role belongs to a mail folder, every other role to its own kind
    CHECK (role IS NULL
           OR (role IN ('inbox', 'drafts', 'sent', 'trash', 'junk', 'archive') AND kind = 'mail')
           OR role = kind),
    CHECK (CASE WHEN parent_id IS NULL THEN path = name
                ELSE right(path, length(name) + 1) = '/' || name END)
);
-- One name per level, ignoring (ASCII) case. Serves the sibling-name check of
-- create and rename.
CREATE UNIQUE INDEX folders_sibling_name
    ON folders (account_id, COALESCE(parent_id, 0), lower(name));
-- Path lookups (folders_find_path: every IMAP SELECT, APPEND, COPY target,
-- DAV request) and, as a range on the C-ordered path, the subtree of a folder
-- (rename, delete). Also serves folders_list by its leading column.
CREATE UNIQUE INDEX folders_account_path ON folders (account_id, path);
-- One folder per role and account; serves folders_find_role (delivery to the
-- INBOX, saving to Sent and Drafts, the default calendar).
CREATE UNIQUE INDEX folders_account_role ON folders (account_id, role) WHERE role IS NOT NULL;
-- Serves the cascade from a parent to its children.
CREATE INDEX folders_parent ON folders (parent_id);

-- A user's subscription to a folder: one of their own or one shared with them.
CREATE TABLE subscriptions (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder_id   bigint NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- also serves folders_subscriptions (account_id = $1)
    PRIMARY KEY (account_id, folder_id)
);
-- Serves the cascade when a folder is deleted.
CREATE INDEX subscriptions_folder ON subscriptions (folder_id);

-- Members of a group account: accounts, other groups (groups nest) and whole
-- domains. Code that reads it must terminate on a cycle (storage/acl.c
-- expands with a recursive UNION, which does).
CREATE TABLE group_members (
    group_id    bigint NOT NULL,
    -- always 'group': with group_id it references accounts (id, kind), so a
    -- group is an account of kind group and cannot change kind while it has
    -- members
    group_kind  text NOT NULL DEFAULT 'group' CHECK (group_kind = 'group'),
    member_kind text NOT NULL CHECK (member_kind IN ('account', 'group', 'domain')),
    -- accounts.id for 'account' and 'group', domains.id for 'domain'
    member_id   bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_kind, member_id),
    FOREIGN KEY (group_id, group_kind) REFERENCES accounts (id, kind) ON DELETE CASCADE
);
-- "Which groups is X a member of": every acl_rights() call expands an
-- account's groups through it, starting from the account and its domain and
-- following member_kind = 'group' upwards. Covering, so no heap visits.
CREATE INDEX group_members_member ON group_members (member_kind, member_id, group_id);

-- A folder's own access control entries (used when acl_inherit is false).
CREATE TABLE folder_acl (
    folder_id    bigint NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    grantee_kind text NOT NULL CHECK (grantee_kind IN ('account', 'group', 'domain', 'anyone')),
    -- accounts.id for 'account' and 'group', domains.id for 'domain', NULL for 'anyone'
    grantee_id   bigint,
    -- RFC 4314 §2.1 rights, a non-empty subset in the canonical order
    -- lrswipkxtea (an entry without rights is removed instead)
    rights       text COLLATE "C" NOT NULL
                 CHECK (rights <> '' AND rights ~ '^l?r?s?w?i?p?k?x?t?e?a?$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((grantee_kind = 'anyone') = (grantee_id IS NULL))
);
-- One entry per grantee and folder. By its leading column it serves
-- acl_rights() and acl_list() (the entries of the folder whose ACL applies).
CREATE UNIQUE INDEX folder_acl_entry
    ON folder_acl (folder_id, grantee_kind, COALESCE(grantee_id, 0));
-- "Who shares with me" (the reverse lookup from a grantee to the folders
-- granted to it) and the clean-up when a grantee is deleted.
CREATE INDEX folder_acl_grantee ON folder_acl (grantee_kind, grantee_id);

-- What was deleted, so synchronising clients learn of it: IMAP QRESYNC
-- VANISHED (RFC 7162 §3.2.10), WebDAV sync-collection (RFC 6578 §3.5),
-- ActiveSync Sync/FolderSync deletes. object_id is the id of the deleted
-- row; folder_id the folder it was in (for a folder: its parent); uid the
-- IMAP UID of a message.
CREATE TABLE tombstones (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    modseq      bigint NOT NULL CHECK (modseq > 0),
    object_kind text NOT NULL CHECK (object_kind IN ('folder', 'message', 'item')),
    object_id   bigint NOT NULL,
    folder_id   bigint,
    uid         bigint,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
-- "What was deleted since modseq X" (changes_tombstones_since), and the
-- cascade when an account is deleted.
CREATE INDEX tombstones_account_modseq ON tombstones (account_id, modseq);
-- The retention purge by age (changes_purge_tombstones).
CREATE INDEX tombstones_deleted_at ON tombstones (deleted_at);

-- group_members.member_id and folder_acl.grantee_id name an account or a
-- domain depending on the kind column, which a foreign key cannot express.
-- These triggers remove what named a deleted account or domain (also when a
-- domain's deletion cascades to its accounts), so a grant never outlives its
-- grantee.
CREATE FUNCTION floe_forget_deleted_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM group_members m USING gone g
     WHERE m.member_kind IN ('account', 'group') AND m.member_id = g.id;
    DELETE FROM folder_acl a USING gone g
     WHERE a.grantee_kind IN ('account', 'group') AND a.grantee_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_forget AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION floe_forget_deleted_accounts();

CREATE FUNCTION floe_forget_deleted_domains() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM group_members m USING gone g
     WHERE m.member_kind = 'domain' AND m.member_id = g.id;
    DELETE FROM folder_acl a USING gone g
     WHERE a.grantee_kind = 'domain' AND a.grantee_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER domains_forget AFTER DELETE ON domains
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION floe_forget_deleted_domains();
