-- 0003: the rest of the directory: account aliases tied to their domain,
-- catch-all addresses, forwarders, group delivery, resources, quotas, service
-- policies and the login policy (storage/aliases.c, groups.c, quota.c,
-- policy.c).
--
-- Limits are bigint byte or message counts; 0 means unlimited and NULL, where
-- allowed, means "not set here: inherit from the level above" (account ->
-- domain default per account -> server default).
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

-- Server-wide settings: exactly one row, created here.
CREATE TABLE server_settings (
    id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- how a login name is matched (dir_authenticate): the full address only,
    -- or also a bare local part that exactly one account in all domains has
    login_policy           text NOT NULL DEFAULT 'full_address'
                           CHECK (login_policy IN ('full_address', 'local_part_when_unambiguous')),
    -- limits of an account when neither the account nor its domain sets one
    account_quota_bytes    bigint NOT NULL DEFAULT 0 CHECK (account_quota_bytes >= 0),
    account_quota_messages bigint NOT NULL DEFAULT 0 CHECK (account_quota_messages >= 0)
);
INSERT INTO server_settings DEFAULT VALUES;

-- An alias lives in a domain (by the domain's own name; one given through a
-- domain alias is stored under the real domain) and goes when the domain
-- goes, even when it names an account of another domain.
ALTER TABLE account_aliases ADD COLUMN domain_id bigint REFERENCES domains (id) ON DELETE CASCADE;
UPDATE account_aliases al SET domain_id = d.id
    FROM domains d WHERE d.name = split_part(al.address, '@', 2);
-- An alias in no served domain could never be reached.
DELETE FROM account_aliases WHERE domain_id IS NULL;
ALTER TABLE account_aliases ALTER COLUMN domain_id SET NOT NULL;
-- serves the cascade when a domain is deleted. The resolution of an address
-- (dir_resolve, dir_authenticate) uses the unique index on address; listing
-- an account's aliases uses account_aliases_account_id from 0001.
CREATE INDEX account_aliases_domain_id ON account_aliases (domain_id);

ALTER TABLE domains
    -- the account that receives mail for unknown local parts of the domain
    ADD COLUMN catchall_account_id    bigint REFERENCES accounts (id) ON DELETE SET NULL,
    -- total of all the domain's accounts
    ADD COLUMN quota_bytes            bigint NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
    ADD COLUMN quota_messages         bigint NOT NULL DEFAULT 0 CHECK (quota_messages >= 0),
    -- default limit of each account of the domain; NULL = the server's
    ADD COLUMN account_quota_bytes    bigint CHECK (account_quota_bytes >= 0),
    ADD COLUMN account_quota_messages bigint CHECK (account_quota_messages >= 0);
-- serves the ON DELETE SET NULL when an account is deleted
CREATE INDEX domains_catchall ON domains (catchall_account_id)
    WHERE catchall_account_id IS NOT NULL;

ALTER TABLE accounts
    -- groups only: 'members' fans mail out to the expanded membership,
    -- 'folder' delivers it into the group's shared folder
    ADD COLUMN deliver_to     text NOT NULL DEFAULT 'members'
                              CHECK (deliver_to IN ('members', 'folder')),
    -- NULL = the domain's default per account, else the server's
    ADD COLUMN quota_bytes    bigint CHECK (quota_bytes >= 0),
    ADD COLUMN quota_messages bigint CHECK (quota_messages >= 0);
-- serves the bare-local-part login (dir_authenticate under the policy
-- local_part_when_unambiguous): lower(local_part) = $ across all domains
CREATE INDEX accounts_local_part ON accounts (lower(local_part));

-- Where an account's mail is forwarded. Read by primary key at delivery.
CREATE TABLE forwarders (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- local@domain addresses, at most 32, checked by dir_forward_set
    targets    text[] NOT NULL
               CHECK (cardinality(targets) BETWEEN 1 AND 32
                      AND array_position(targets, NULL) IS NULL),
    -- deliver to the account as well
    keep_copy  boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Settings of a resource (an account of kind 'resource'). A resource without
-- a row has the column defaults.
CREATE TABLE resources (
    account_id     bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    resource_type  text NOT NULL DEFAULT 'room' CHECK (resource_type IN ('room', 'equipment')),
    -- how a booking request is answered: at once when the slot is free, or
    -- after a manager approved it
    booking_policy text NOT NULL DEFAULT 'auto_accept'
                   CHECK (booking_policy IN ('auto_accept', 'manager_approval'))
);

-- Accounts that manage a resource (approve bookings, edit its calendar).
CREATE TABLE resource_managers (
    resource_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    manager_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (resource_id, manager_id)
);
-- serves the cascade when a manager's account is deleted and "which
-- resources does this account manage"
CREATE INDEX resource_managers_manager_id ON resource_managers (manager_id);

-- Storage used per account, kept by the mail store through quota_charge() in
-- the same transactions that add and remove messages. Read and locked by
-- primary key; the domain total sums it through accounts_domain_local.
CREATE TABLE quota_usage (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    messages   bigint NOT NULL DEFAULT 0 CHECK (messages >= 0)
);

-- Access to a service, per domain and per account. No row = inherit (from
-- the domain for an account; enabled for a domain). Looked up by primary key
-- at every login (policy_service_allowed).
CREATE TABLE domain_service_policies (
    domain_id bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    service   text NOT NULL
              CHECK (service IN ('imap', 'pop3', 'smtp', 'activesync', 'dav', 'syncml')),
    enabled   boolean NOT NULL,
    PRIMARY KEY (domain_id, service)
);
CREATE TABLE account_service_policies (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    service    text NOT NULL
               CHECK (service IN ('imap', 'pop3', 'smtp', 'activesync', 'dav', 'syncml')),
    enabled    boolean NOT NULL,
    PRIMARY KEY (account_id, service)
);
