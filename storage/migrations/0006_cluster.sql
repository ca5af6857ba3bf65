-- Cluster membership and master election (cluster/cluster.c).
--
-- Every node upserts its row in cluster_nodes at start and refreshes
-- heartbeat_at every second; `floectl cluster status` derives up / stale / gone
-- from the heartbeat's age. The master is whoever holds the election advisory
-- lock; cluster_leader records who took it last and the epoch (fencing token),
-- incremented at every takeover. Master-only work records the epoch it ran under.

CREATE TABLE cluster_nodes (
    node_id      text PRIMARY KEY,
    addresses    text NOT NULL DEFAULT '',
    version      text NOT NULL DEFAULT '',
    roles        text NOT NULL DEFAULT '',
    pid          integer NOT NULL DEFAULT 0,
    backend_pid  integer NOT NULL DEFAULT 0,  -- the PostgreSQL backend of its election connection
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,                 -- set by a clean stop
    connections  jsonb NOT NULL DEFAULT '{}'  -- service -> open connections, per heartbeat
);

CREATE TABLE cluster_leader (
    id          integer PRIMARY KEY CHECK (id = 1),
    epoch       bigint NOT NULL DEFAULT 0,
    node_id     text,
    since       timestamptz,
    pinned_node text,                          -- floectl cluster master pin
    stepdown_epoch bigint NOT NULL DEFAULT 0   -- the master of this epoch is asked to step down
);
INSERT INTO cluster_leader (id) VALUES (1);
