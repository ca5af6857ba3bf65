-- 0007: scheduled tasks and events (cluster/scheduler.c), the product's
-- "Tasks & Events" with the "perform on master only" flag.
--
-- A task runs on a cron-like schedule: a command, a URL fetch, or a built-in
-- maintenance job. Each run of a schedule slot is claimed by a row in
-- task_runs before it starts: a master-only task is claimed once for the
-- cluster (node_id ''), so a slot runs on one node; any other task once per
-- node. Runs record the election epoch they started under.

CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    schedule    text NOT NULL CHECK (octet_length(schedule) BETWEEN 1 AND 255),
    master_only boolean NOT NULL DEFAULT true,
    action      text NOT NULL CHECK (action IN ('command', 'url', 'builtin')),
    target      text NOT NULL CHECK (octet_length(target) BETWEEN 1 AND 4096),
    timeout_s   integer NOT NULL DEFAULT 300 CHECK (timeout_s BETWEEN 1 AND 86400),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_runs (
    task_id     bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    node_id     text NOT NULL,           -- '' for a master-only task's cluster-wide claim
    slot        timestamptz NOT NULL,    -- the scheduled time this run is for
    ran_on      text NOT NULL,           -- the node that ran it
    epoch       bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed')),
    output      text NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, node_id, slot)
);
-- The scheduler's "last slot of this task here" and floectl task show.
CREATE INDEX task_runs_latest ON task_runs (task_id, node_id, slot DESC);

-- Actions bound to node events: started, stopped, settings changed (reload).
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    event       text NOT NULL CHECK (event IN ('server_started', 'server_stopped', 'settings_changed')),
    master_only boolean NOT NULL DEFAULT false,
    action      text NOT NULL CHECK (action IN ('command', 'url')),
    target      text NOT NULL CHECK (octet_length(target) BETWEEN 1 AND 4096),
    timeout_s   integer NOT NULL DEFAULT 60 CHECK (timeout_s BETWEEN 1 AND 3600),
    enabled     boolean NOT NULL DEFAULT true
);
-- Serves "the actions for this event" at every start, stop and reload.
CREATE INDEX events_event ON events (event) WHERE enabled;
