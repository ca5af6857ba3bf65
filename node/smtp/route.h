/* Where mail for one recipient goes, and the delivery of an accepted message
 * (blocking code for worker threads; the SMTP session (node/smtp/session.c)
 * calls it through jobs).
 *
 * A recipient resolves to local targets (an account's INBOX: the account
 * itself, the members of a group, a group's own folder, the local targets of
 * a forwarder) and remote addresses (relay, remote forward targets), which go
 * to the outbound queue. */
#ifndef FLOE_NODE_SMTP_ROUTE_H
#define FLOE_NODE_SMTP_ROUTE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "proto/smtp/smtp.h"

struct blob_store;

struct smtp_local_target {
    long long account_id;
    long long folder_id;
    char address[SMTP_ADDRESS_MAX + 1]; /* the account's address */
};

/* One accepted recipient with its targets. */
struct smtp_route {
    struct smtp_rcpt rcpt;
    struct smtp_local_target *local;
    size_t nlocal;
    char (*remote)[SMTP_ADDRESS_MAX + 1];
    size_t nremote;
};

void smtp_route_free(struct smtp_route *r);

/* Resolves rcpt (already parsed) for a message of declared size (-1: not
 * declared). may_relay: the client may send to domains that are not ours.
 * Returns 0 with *r_r filled (caller frees with smtp_route_free), or the
 * SMTP reply in *reply_r: 550 5.1.1 unknown user, 550 5.2.1 disabled,
 * 554 5.7.1 relay denied, 452 4.2.2 / 552 5.2.2 mailbox full, 451 4.3.0 on a
 * database error (return -2: the worker's connection should be checked). */
int smtp_route_resolve(PGconn *c, const struct smtp_rcpt *rcpt, long long size, bool may_relay,
                       struct smtp_route *r_r, struct smtp_reply *reply_r);

/* An accepted message to store: the spooled body (after DATA/BDAT), the
 * envelope, the trace fields to prepend. */
struct smtp_message {
    FILE *spool;          /* the message as received, rewound by the callee */
    const char *received; /* "Received: ...\r\n" */
    const struct smtp_mail *mail;
    const struct smtp_route *routes;
    size_t nroutes;
    const char *node;        /* this node's id (queue origin) */
    unsigned queue_lifetime; /* seconds */
    long long auth_account;  /* the authenticated submitter, 0 none */
    const char *hostname;    /* this server's name (auto-reply Message-ID) */
};

/* Stores the message: one blob for local targets (with Return-Path), one for
 * the queue (without), every local append and the queue entry in one
 * transaction. Each local account gets the message once however many
 * recipients reach it. Then publishes the mailbox changes on the bus and
 * queues the auto-replies of recipients that have an auto-responder
 * (storage/autoreply.h; best effort: a failure there is logged, not fatal).
 * Returns 0 with the queue id (0 when nothing was queued) in *queue_id_r and
 * the number of auto-replies queued in *autoreplies_r, or
 * -1 with a message (nothing was stored then; -2 when the worker's database
 * connection should be checked). */
int smtp_message_store(PGconn *c, struct blob_store *bs, const struct smtp_message *m,
                       long long *queue_id_r, int *autoreplies_r, char *err, size_t errlen);

#endif
