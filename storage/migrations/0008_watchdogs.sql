-- 0008: remote watchdogs (cluster/watchdog.c), the product's "Remote Watchdog":
-- the cluster master probes TCP services, HTTP(S) URLs and DNS records and
-- raises alerts when one goes down, comes back or changes.
--
-- The probe state is kept in the row so that a new master continues from it
-- after a failover (down_alerted: the "down" alert of the current outage went
-- out and is not raised again). Each check updates the row and inserts its
-- alerts in one transaction under the election epoch fence.

CREATE TABLE watchdogs (
    id             bigserial PRIMARY KEY,
    name           text COLLATE "C" NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    target         text NOT NULL CHECK (octet_length(target) BETWEEN 1 AND 2048),
    send           text NOT NULL DEFAULT '' CHECK (octet_length(send) <= 4096), -- as entered, C escapes
    expect         text NOT NULL DEFAULT '' CHECK (octet_length(expect) <= 512),  -- POSIX ERE
    interval_s     integer NOT NULL DEFAULT 60 CHECK (interval_s BETWEEN 1 AND 86400),
    down_after_min integer NOT NULL DEFAULT 0 CHECK (down_after_min BETWEEN 0 AND 10080),
    alert_address  text NOT NULL DEFAULT '' CHECK (octet_length(alert_address) <= 320),
    notify_back    boolean NOT NULL DEFAULT false,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- probe state
    state          text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'up', 'down')),
    since          timestamptz,                  -- when state last changed
    down_alerted   boolean NOT NULL DEFAULT false,
    last_check     timestamptz,
    next_check     timestamptz NOT NULL DEFAULT now(),
    last_error     text NOT NULL DEFAULT '',
    last_hash      text NOT NULL DEFAULT '',     -- SHA-256 hex of the body / DNS answers
    content_size   bigint,                       -- http: body bytes; dns: answers
    content_at     timestamptz,                  -- when the current content was first seen
    last_answers   text NOT NULL DEFAULT '',     -- dns: sorted answers, one a line
    checked_by     text NOT NULL DEFAULT '',     -- node of the last check
    epoch          bigint NOT NULL DEFAULT 0     -- election epoch of the last check
);
-- Serves the master's "checks due now" every scheduler tick
-- (WHERE enabled AND next_check <= now() ORDER BY next_check LIMIT n).
CREATE INDEX watchdogs_due ON watchdogs (next_check) WHERE enabled;

CREATE TABLE watchdog_alerts (
    id          bigserial PRIMARY KEY,
    watchdog_id bigint NOT NULL REFERENCES watchdogs (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('down', 'back_online', 'changed')),
    at          timestamptz NOT NULL DEFAULT now(),
    message     text NOT NULL DEFAULT '',
    node_id     text NOT NULL DEFAULT '',    -- the master that raised it
    epoch       bigint NOT NULL,             -- its election epoch
    delivered   boolean NOT NULL DEFAULT false -- mailed to the alert address (SMTP queue)
);
-- Serves `floectl watchdog alerts NAME` (newest first).
CREATE INDEX watchdog_alerts_watchdog ON watchdog_alerts (watchdog_id, id DESC);
-- Serves the delivery queue's "alerts not mailed yet".
CREATE INDEX watchdog_alerts_undelivered ON watchdog_alerts (id) WHERE NOT delivered;
