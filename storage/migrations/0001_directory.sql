-- 0001: the directory: mail domains and the accounts inside them.
--
-- Names are compared case-insensitively. Domain names and aliases are stored
-- lower-case; local parts keep the case they were created with and are
-- unique by lower(local_part). Name columns use the "C" collation so lower()
-- and ORDER BY behave the same whatever locale the database was created
-- with (names are ASCII: LDH domains, RFC 5321 dot-atom local parts).
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

-- Everything in Floe is UTF-8; a SQL_ASCII or LATIN1 database would store
-- whatever bytes arrive and break non-ASCII names, subjects and folders later.
DO $$
BEGIN
    IF pg_catalog.current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'Floe needs a UTF8 database; this one is %',
            pg_catalog.current_setting('server_encoding')
            USING HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0, or initdb -E UTF8';
    END IF;
END
$$;

-- A mail domain served by this installation.
CREATE TABLE domains (
    id          bigserial PRIMARY KEY,
    -- lower-case LDH labels separated by dots, at most 253 characters
    name        text COLLATE "C" NOT NULL UNIQUE
                CHECK (name = lower(name)
                       AND length(name) BETWEEN 1 AND 253
                       AND name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL DEFAULT '',
    -- per-domain settings (limits, policies); keys are defined by the code
    -- that reads them, unknown keys are ignored
    settings    jsonb NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(settings) = 'object')
);

-- Another name for a domain: user@alias reaches the same account as
-- user@domain. An alias must not also be a domain name (checked by the code
-- that adds either, since a constraint cannot span the two tables).
CREATE TABLE domain_aliases (
    name        text COLLATE "C" NOT NULL UNIQUE
                CHECK (name = lower(name)
                       AND length(name) BETWEEN 1 AND 253
                       AND name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$'),
    domain_id   bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- serves the cascade when a domain is deleted
CREATE INDEX domain_aliases_domain_id ON domain_aliases (domain_id);

-- A user, group or resource (room, equipment) with an address in a domain.
CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    domain_id     bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    -- RFC 5321 dot-atom local part, case preserved, at most 64 characters
    local_part    text COLLATE "C" NOT NULL
                  CHECK (length(local_part) BETWEEN 1 AND 64),
    kind          text NOT NULL DEFAULT 'user'
                  CHECK (kind IN ('user', 'group', 'resource')),
    full_name     text NOT NULL DEFAULT ''
                  CHECK (octet_length(full_name) <= 255),
    -- yescrypt crypt string for plain logins and the RFC 5802 SCRAM-SHA-256
    -- verifier; both NULL for an account that cannot log in
    password_hash text,
    scram_sha256  text,
    disabled      boolean NOT NULL DEFAULT false,
    -- server administrator (all domains)
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((password_hash IS NULL) = (scram_sha256 IS NULL))
);
-- One account per local part per domain, ignoring case. Also the index every
-- login and address lookup uses (domain_id = $ AND lower(local_part) = $),
-- and, by its leading column, the one that lists a domain's accounts and
-- serves the cascade when a domain is deleted.
CREATE UNIQUE INDEX accounts_domain_local ON accounts (domain_id, lower(local_part));

-- Further addresses delivering to an account (filled in by later work).
CREATE TABLE account_aliases (
    -- full address local@domain, stored lower-case
    address     text COLLATE "C" NOT NULL UNIQUE
                CHECK (address = lower(address) AND length(address) BETWEEN 3 AND 318),
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- serves the cascade when an account is deleted
CREATE INDEX account_aliases_account_id ON account_aliases (account_id);
