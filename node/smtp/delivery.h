/* Outbound delivery: threads that work the cluster-wide queue (storage/queue.h).
 *
 * Each thread has its own PostgreSQL connection and DNS resolver and loops:
 * claim a batch (one message, its due recipients of one domain) under a lease,
 * deliver it — into local mailboxes when the domain is ours (notifications to
 * local senders, forwards), else over SMTP to the domain's MX hosts or the
 * smarthost — and report the outcome. Blocking I/O on purpose: one thread per
 * transaction is the simplest model that is correct, and the thread count
 * bounds the node's outbound concurrency ([smtp] delivery_threads).
 * Every few seconds the threads also look for due retries and owed delivery
 * status notifications; delivery_kick() wakes one at once after a message was
 * queued on this node. */
#ifndef FLOE_NODE_SMTP_DELIVERY_H
#define FLOE_NODE_SMTP_DELIVERY_H

#include <stddef.h>

struct config;
struct blob_store;

/* Starts cfg->smtp.delivery_threads threads. 0 ok, -1 with message. */
int delivery_start(const struct config *cfg, struct blob_store *bs, char *err, size_t errlen);
/* Wakes an idle delivery thread (any thread). */
void delivery_kick(void);
/* Stops the threads after their current batch (an unfinished attempt leaves
 * its lease to run out, and the batch is delivered again). */
void delivery_stop(void);

#endif
