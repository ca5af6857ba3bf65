-- 0012: auto-responder ("vacation"): one per account, and the senders it has
-- answered, so each sender gets at most one reply per interval (RFC 3834 §2,
-- RFC 5230 §4.1). storage/autoreply.c.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE autoreplies (
    account_id  bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    subject     text NOT NULL CHECK (length(subject) <= 998),
    body        text NOT NULL CHECK (length(body) <= 65536),
    interval_s  integer NOT NULL DEFAULT 604800 CHECK (interval_s BETWEEN 60 AND 31536000),
    starts_at   timestamptz,  -- NULL: active now
    ends_at     timestamptz   -- NULL: until removed
);

CREATE TABLE autoreply_sent (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    sender      text NOT NULL,   -- lower-cased envelope sender
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, sender)   -- serves the per-sender check on delivery
);
-- serves purging old rows (autoreply_purge)
CREATE INDEX autoreply_sent_at ON autoreply_sent (sent_at);
