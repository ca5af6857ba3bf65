-- 0013: intrusion prevention (storage/ips.c, node/ips.c; seed 003 "Intrusion
-- prevention").
--
-- Failed logins are counted per client address; past [ips] failures within
-- [ips] window seconds the address is blocked for [ips] block seconds. Every
-- node refuses the blocked addresses of all nodes: this table is the shared,
-- durable list, read by every node at start and every [ips] refresh seconds,
-- while the cluster bus (channel floe:ips) brings each change at once.
--
-- Addresses are single hosts (an IPv4 client seen on an IPv6 socket is stored
-- as its IPv4 address by the callers). Times come from the database's clock.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE ips_blocks (
    address    inet NOT NULL
               CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END),
    -- the [service NAME] refused, or '*' for every service (automatic blocks)
    service    text COLLATE "C" NOT NULL
               CHECK (service = '*' OR service ~ '^[a-z0-9_-]{1,32}$'),
    reason     text NOT NULL DEFAULT '' CHECK (octet_length(reason) <= 256),
    blocked_at timestamptz NOT NULL DEFAULT now(),
    until      timestamptz NOT NULL,
    node       text NOT NULL DEFAULT '' CHECK (octet_length(node) <= 64), -- who blocked it
    -- Adding (an upsert), removing and looking up one block all name
    -- (address, service): the primary key serves them.
    PRIMARY KEY (address, service)
);
-- Every node reads the blocks in force (WHERE until > now()) at start and every
-- [ips] refresh seconds, and expired blocks are deleted (WHERE until <= now()):
-- both are range scans on until, served by this index.
CREATE INDEX ips_blocks_until ON ips_blocks (until);

-- Failure counters, used only while Redis is not configured or not reachable
-- (with Redis the counter is the key floe:ips:fail:<address>). One row per
-- address: a failure is one upsert that starts a new window when the old one
-- has passed. UNLOGGED: a counter is worth no WAL, and one lost in a crash or
-- a failover only gives an attacker a few more tries.
CREATE UNLOGGED TABLE ips_failures (
    address      inet PRIMARY KEY
                 CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END),
    window_start timestamptz NOT NULL,
    failures     integer NOT NULL CHECK (failures >= 0)
);
-- Stale counters (window passed) are deleted with the expired blocks.
CREATE INDEX ips_failures_window ON ips_failures (window_start);
