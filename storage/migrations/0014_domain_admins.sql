-- 0014: domain administrators, and the sessions and RSA keys of the
-- vendor-compatible admin XML API (storage/domainadmin.c, storage/apisession.c,
-- node/http/vendorapi.c; docs/VENDORAPI.md).
--
-- A domain administrator is an account that manages the accounts and the
-- domain record of the domains listed here for it, and nothing else; a server
-- administrator (accounts.is_admin) manages everything and needs no row.
--
-- Sessions of the XML API live here rather than in a node's memory: nodes are
-- stateless behind a load balancer, so a session opened on one node must work
-- on every other one and survive a node restart. The same goes for the RSA
-- keys of the challenge login: each node makes its own key pair and publishes
-- it here, so a digest made with one node's key can be checked by any node.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE domain_admins (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    domain_id  bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- "does account A administer domain D" (every admin API request of a
    -- domain administrator) and "which domains does A administer" both lead
    -- with account_id: the primary key serves them and the cascade from
    -- accounts.
    PRIMARY KEY (account_id, domain_id)
);
-- "Who administers domain D" (floectl, getdomainproperties) and the cascade
-- when a domain is deleted.
CREATE INDEX domain_admins_domain_id ON domain_admins (domain_id);

-- One XML API session. The session id itself is never stored, only its
-- SHA-256 (hex): whoever reads this table cannot take over a session.
CREATE TABLE vendorapi_sessions (
    id_hash      text COLLATE "C" PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{64}$'),
    account_id   bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    -- idle lifetime: the session ends this long after its last use
    idle_seconds integer NOT NULL CHECK (idle_seconds > 0),
    -- absolute end, whatever the use
    expires_at   timestamptz NOT NULL
);
-- The cascade when an account is deleted (its sessions end with it).
CREATE INDEX vendorapi_sessions_account_id ON vendorapi_sessions (account_id);
-- The purge of sessions past their absolute end (apisession_purge), a range
-- scan. Idle sessions are refused on use and purged once past expires_at.
CREATE INDEX vendorapi_sessions_expires_at ON vendorapi_sessions (expires_at);

-- The RSA private keys of the challenge login, one row per key a node made
-- (at start, then once a day). Read as a whole (a handful of rows: one or two
-- per live node) when a digest must be decrypted; old rows are deleted by the
-- node that adds the next key, by created_at.
CREATE TABLE vendorapi_keys (
    id          bigserial PRIMARY KEY,
    node        text NOT NULL CHECK (length(node) BETWEEN 1 AND 64),
    private_pem text NOT NULL CHECK (octet_length(private_pem) <= 8192),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vendorapi_keys_created_at ON vendorapi_keys (created_at);
