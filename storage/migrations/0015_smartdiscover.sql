-- 0015: SmartDiscover settings per domain (seed 003 "SmartDiscover"): the public
-- host name, the host, TLS mode and port of SMTP, POP3, IMAP, XMPP and SIP, and
-- the URLs of MobileSync (ActiveSync), SyncML, WebDAV, WebClient, WebAdmin,
-- Free/Busy, Internet Calendar, CalDAV and CardDAV that client
-- auto-configuration hands out for the domain (node/http/discover*.c,
-- docs/AUTODISCOVER.md). storage/smartdiscover.c reads and writes it.
--
-- Every column may be NULL: the value then comes from the node configuration
-- ([service web] public_hostname, standard ports). Behind a load balancer these
-- name the cluster's public name, never a node.
--
-- Read once per auto-configuration request by the domain's primary key.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

CREATE TABLE smartdiscover (
    domain_id       bigint PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    public_hostname text CHECK (length(public_hostname) BETWEEN 1 AND 253),
    smtp_host       text CHECK (length(smtp_host) BETWEEN 1 AND 253),
    smtp_tls        text CHECK (smtp_tls IN ('tls', 'starttls', 'none')),
    smtp_port       integer CHECK (smtp_port BETWEEN 1 AND 65535),
    pop3_host       text CHECK (length(pop3_host) BETWEEN 1 AND 253),
    pop3_tls        text CHECK (pop3_tls IN ('tls', 'starttls', 'none')),
    pop3_port       integer CHECK (pop3_port BETWEEN 1 AND 65535),
    imap_host       text CHECK (length(imap_host) BETWEEN 1 AND 253),
    imap_tls        text CHECK (imap_tls IN ('tls', 'starttls', 'none')),
    imap_port       integer CHECK (imap_port BETWEEN 1 AND 65535),
    xmpp_host       text CHECK (length(xmpp_host) BETWEEN 1 AND 253),
    xmpp_tls        text CHECK (xmpp_tls IN ('tls', 'starttls', 'none')),
    xmpp_port       integer CHECK (xmpp_port BETWEEN 1 AND 65535),
    sip_host        text CHECK (length(sip_host) BETWEEN 1 AND 253),
    sip_tls         text CHECK (sip_tls IN ('tls', 'starttls', 'none')),
    sip_port        integer CHECK (sip_port BETWEEN 1 AND 65535),
    mobilesync_url  text CHECK (length(mobilesync_url) BETWEEN 1 AND 1024),
    syncml_url      text CHECK (length(syncml_url) BETWEEN 1 AND 1024),
    webdav_url      text CHECK (length(webdav_url) BETWEEN 1 AND 1024),
    webclient_url   text CHECK (length(webclient_url) BETWEEN 1 AND 1024),
    webadmin_url    text CHECK (length(webadmin_url) BETWEEN 1 AND 1024),
    freebusy_url    text CHECK (length(freebusy_url) BETWEEN 1 AND 1024),
    icalendar_url   text CHECK (length(icalendar_url) BETWEEN 1 AND 1024),
    caldav_url      text CHECK (length(caldav_url) BETWEEN 1 AND 1024),
    carddav_url     text CHECK (length(carddav_url) BETWEEN 1 AND 1024),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
