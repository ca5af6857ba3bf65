-- 0011: cluster-wide exclusive session locks (storage/session_lock.c).
--
-- One row per held lock: an account's "pop3" maildrop lock (RFC 1939 §8: a
-- POP3 server must keep a second session from opening the same maildrop) and
-- any later kind of per-account exclusivity. Nodes are stateless, so the lock
-- lives here and works across the cluster. A lock is a lease: its holder
-- renews expires_at while the session lives; a node that dies stops renewing
-- and the row is taken over by the next session once expires_at has passed.
-- Times come from the database's clock only, so nodes with skewed clocks agree.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE session_locks (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        text COLLATE "C" NOT NULL CHECK (kind ~ '^[a-z0-9_-]{1,32}$'),
    node        text NOT NULL CHECK (length(node) BETWEEN 1 AND 64),   -- [node] id of the holder
    session     text NOT NULL CHECK (length(session) BETWEEN 1 AND 64), -- the holder's session tag
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Acquire, renew and release all address one lock by (account, kind): the
    -- primary key serves them and makes two holders impossible.
    PRIMARY KEY (account_id, kind)
);
-- Dropping every lock of one node (session_lock_release_node, at node start):
-- a scan by node, rare and small, served by this index.
CREATE INDEX session_locks_node ON session_locks (node);
