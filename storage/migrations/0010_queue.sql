-- 0010: the cluster-wide outbound mail queue (storage/queue.c).
--
-- Nodes are stateless, so the SMTP outbound queue lives here: any node may
-- deliver any queued message, and when a node dies its deliveries continue
-- elsewhere once its leases run out. The message bytes are a blob (0004),
-- written before the queue row that references it.
--
-- A message has one row per recipient. A delivery node claims a batch (one
-- message, the due recipients of one domain) by setting a lease on those
-- recipient rows; the claim also pushes next_attempt_at to the end of the
-- lease, so a lease that runs out (its node died) makes the rows due again
-- and the one index on next_attempt_at serves both cases. A report is
-- accepted only from the holder of the lease (lease_token), so a node that
-- was fenced out cannot overwrite a newer claim's results.
--
-- notice says which delivery status notification (RFC 3461, RFC 3464) is
-- owed to the sender for a recipient; queue_notices_run() sends it and sets
-- it back to 'none'. A message whose recipients are all final and owe no
-- notice is deleted.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE queue_messages (
    id           bigserial PRIMARY KEY,
    blob_id      text COLLATE "C" NOT NULL CHECK (blob_id ~ '^[0-9a-f]{64}$'),
    size         bigint NOT NULL CHECK (size >= 0),
    -- the reverse-path, '' for the null sender <> (RFC 5321 §4.5.5)
    sender       text NOT NULL CHECK (octet_length(sender) <= 320),
    -- RFC 3461 §4.4 ENVID (decoded), '' when not given
    envid        text NOT NULL DEFAULT '' CHECK (octet_length(envid) <= 100),
    -- RFC 3461 §4.3 RET, '' when not given
    ret          text NOT NULL DEFAULT '' CHECK (ret IN ('', 'full', 'hdrs')),
    -- RFC 6152 / RFC 3030 BODY
    body         text NOT NULL DEFAULT '7bit' CHECK (body IN ('7bit', '8bitmime', 'binarymime')),
    smtputf8     boolean NOT NULL DEFAULT false,
    -- a notification we generated: it never gets a notification itself
    is_notice    boolean NOT NULL DEFAULT false,
    received_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    origin_node  text NOT NULL DEFAULT '',
    auth_account bigint REFERENCES accounts (id) ON DELETE SET NULL,
    CHECK (expires_at >= received_at)
);
-- Blob garbage collection: is this blob still referenced by a queued message?
CREATE INDEX queue_messages_blob ON queue_messages (blob_id);

CREATE TABLE queue_recipients (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
    address          text NOT NULL CHECK (octet_length(address) BETWEEN 3 AND 320),
    -- the part after the last '@', lower-cased: batches go per destination
    domain           text COLLATE "C" NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
    -- RFC 3461 §4.2 ORCPT ("rfc822;addr"), '' when not given
    orcpt            text NOT NULL DEFAULT '' CHECK (octet_length(orcpt) <= 500),
    -- RFC 3461 §4.1 NOTIFY as SMTP_NOTIFY_* bits (proto/smtp/smtp.h), 0 = not given
    notify           integer NOT NULL DEFAULT 0 CHECK (notify BETWEEN 0 AND 15),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- when the recipient is due; while leased, the end of the lease
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    last_status      text NOT NULL DEFAULT '',   -- RFC 3463 enhanced code, "4.4.1"
    last_reply       text NOT NULL DEFAULT '',   -- the remote reply, for the DSN's diagnostic
    remote_host      text NOT NULL DEFAULT '',
    lease_node       text,
    lease_until      timestamptz,
    lease_token      bigint,
    -- the notification owed to the sender for this recipient
    notice           text NOT NULL DEFAULT 'none'
                     CHECK (notice IN ('none', 'failure', 'delay', 'success')),
    delay_notified   boolean NOT NULL DEFAULT false
);
-- The claim: the oldest due recipients (queue_claim), and queue_retry's
-- "due now" of all messages.
CREATE INDEX queue_recipients_due ON queue_recipients (next_attempt_at) WHERE state = 'queued';
-- A message's recipients: the rest of a claimed batch (same message and
-- domain), reports, "is the message finished", queue show, and the cascade
-- when a message is deleted.
CREATE INDEX queue_recipients_message ON queue_recipients (message_id, domain);
-- queue_notices_run: the messages that owe a notification.
CREATE INDEX queue_recipients_notice ON queue_recipients (message_id) WHERE notice <> 'none';

-- Lease tokens: each claim takes a new one, and a report must present it.
CREATE SEQUENCE queue_lease_tokens;
