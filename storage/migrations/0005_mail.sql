-- 0005: messages of mail folders (storage/mailstore.c).
--
-- A message is a row pointing at its content-addressed blob (0004) plus the
-- metadata computed once at delivery: the IMAP ENVELOPE, BODY and
-- BODYSTRUCTURE strings, the part offsets (so BODY[section] is served from the
-- blob without reparsing), selected header fields for SORT/THREAD/SEARCH and a
-- full-text vector. UIDs come from folders.uidnext and modseqs from the
-- account's sequence, both taken inside the appending transaction.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE messages (
    id            bigserial PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder_id     bigint NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    uid           bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
    modseq        bigint NOT NULL CHECK (modseq >= 1),
    blob_id       text COLLATE "C" NOT NULL CHECK (blob_id ~ '^[0-9a-f]{64}$'),
    size          bigint NOT NULL CHECK (size >= 0),
    internal_date timestamptz NOT NULL DEFAULT now(),
    saved_at      timestamptz NOT NULL DEFAULT now(),
    -- system flags as bits: 1 \Seen, 2 \Answered, 4 \Flagged, 8 \Deleted, 16 \Draft
    flags         integer NOT NULL DEFAULT 0 CHECK (flags BETWEEN 0 AND 31),
    keywords      text[] COLLATE "C" NOT NULL DEFAULT '{}',
    envelope      text NOT NULL,
    body          text NOT NULL,           -- IMAP BODY (non-extensible BODYSTRUCTURE)
    bodystructure text NOT NULL,
    parts         jsonb NOT NULL DEFAULT '[]', -- section -> header/body offsets and sizes
    sent_date     timestamptz,             -- the Date: header, for SORT and SENTBEFORE/SINCE
    subject       text NOT NULL DEFAULT '',-- decoded, for SORT/THREAD/SEARCH
    from_addr     text NOT NULL DEFAULT '',
    to_addr       text NOT NULL DEFAULT '',
    cc_addr       text NOT NULL DEFAULT '',
    message_id    text NOT NULL DEFAULT '',
    in_reply_to   text NOT NULL DEFAULT '',
    refs          text NOT NULL DEFAULT '',
    fts           tsvector NOT NULL DEFAULT ''::tsvector
);
-- UID lookups and ranges of a folder: every FETCH, STORE, COPY, EXPUNGE by UID
-- set, and sequence-number mapping (ORDER BY uid). Uniqueness is the guarantee
-- that no two messages of a folder share a UID.
CREATE UNIQUE INDEX messages_folder_uid ON messages (folder_id, uid);
-- CONDSTORE/QRESYNC "changed since modseq" within a folder (RFC 7162).
CREATE INDEX messages_folder_modseq ON messages (folder_id, modseq);
-- Full-text SEARCH BODY/TEXT.
CREATE INDEX messages_fts ON messages USING gin (fts);
-- Blob garbage collection: is this blob still referenced?
CREATE INDEX messages_blob ON messages (blob_id);

-- Per-folder counters kept in step by every write in the same transaction, so
-- STATUS and SELECT answer without counting rows.
CREATE TABLE folder_counts (
    folder_id  bigint PRIMARY KEY REFERENCES folders (id) ON DELETE CASCADE,
    messages   bigint NOT NULL DEFAULT 0 CHECK (messages >= 0),
    unseen     bigint NOT NULL DEFAULT 0 CHECK (unseen >= 0),
    deleted    bigint NOT NULL DEFAULT 0 CHECK (deleted >= 0),
    bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0)
);

-- QRESYNC VANISHED (RFC 7162 §3.2.5.1): what vanished from one folder since a
-- modseq. Message tombstones always carry their folder.
CREATE INDEX tombstones_folder_modseq ON tombstones (folder_id, modseq) WHERE folder_id IS NOT NULL;
