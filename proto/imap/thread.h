/* IMAP THREAD (RFC 5256): base subject extraction, the ORDEREDSUBJECT and REFERENCES
 * algorithms, and the THREAD response's thread lists, as pure code on an array of messages.
 *
 * The caller (storage/mailsearch.c) gives each matching message's number (its UID), sent date
 * (already falling back to the internal date, RFC 5256 §2.2), decoded Subject, and the raw
 * Message-ID, In-Reply-To and References fields, in mailbox order (ascending UID, which is
 * sequence order: the tie-breaker everywhere in RFC 5256). imap_thread_build() returns a tree
 * whose nodes carry those numbers (0 for the dummy messages REFERENCES makes); the response
 * text maps them to sequence numbers or keeps UIDs.
 *
 * Comparisons. RFC 5256 §7 asks for the i;unicode-casemap collation; Floe compares base
 * subjects without regard to ASCII case and other characters by code point (UTF-8 byte order),
 * which is i;ascii-casemap on UTF-8. Message IDs are compared case-sensitively after removing
 * quoting (RFC 5256 §3: <"a"@b> and <a@b> are one ID); only "<left@right>" counts as valid.
 *
 * Cost and bounds: everything is iterative (a reply chain as long as the mailbox cannot
 * exhaust the stack); message IDs go through one hash table; at most IMAP_THREAD_MAX_REFS
 * references per message are used (the last ones: the nearest ancestors). Building is
 * O(n log n) for ordinary mail; the loop checks of REFERENCES step 1 walk up the tree only when
 * a message that already has children gets a parent. */
#ifndef FLOE_PROTO_IMAP_THREAD_H
#define FLOE_PROTO_IMAP_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/imap/envelope.h"
#include "proto/imap/search.h"

#define IMAP_THREAD_MAX_REFS 256
#define IMAP_THREAD_MAX_MESSAGES 10000000

struct imap_thread_msg {
    uint32_t uid;           /* non-zero; ascending through the array */
    int64_t date;           /* sent date, UTC seconds (RFC 5256 §2.2) */
    const char *subject;    /* decoded Subject (UTF-8), "" or NULL when none */
    const char *message_id; /* raw header values, "" or NULL when absent */
    const char *in_reply_to;
    const char *references;
};

/* A node of the result. uid 0: a dummy (a message that is missing or did not match, RFC 5256
 * REFERENCES steps 1 and 5). Children and siblings are in their final order. */
struct imap_thread_node {
    uint32_t uid;
    struct imap_thread_node *child; /* first child */
    struct imap_thread_node *next;  /* next sibling */
};

struct imap_thread;

/* Threads msgs[0..n) with alg into *thread_r. 0 ok; -1 out of memory or n over
 * IMAP_THREAD_MAX_MESSAGES. */
int imap_thread_build(enum imap_thread_alg alg, const struct imap_thread_msg *msgs, size_t n,
                      struct imap_thread **thread_r);

/* The first top-level thread (NULL when there are none); the others follow through ->next. */
const struct imap_thread_node *imap_thread_roots(const struct imap_thread *t);

void imap_thread_free(struct imap_thread **t);

/* Appends the thread lists, "(2)(3 6 (4 23)(44 7 96))" (RFC 5256 §4 thread-list), to out.
 * map (may be NULL: numbers as they are) turns each UID into the number to write, e.g. its
 * sequence number; it must not return 0. Nothing is appended when there are no threads. The
 * response is "* THREAD", then " " and this text when imap_thread_roots(t) is not NULL, then
 * CRLF (RFC 5256 §5: thread-data = "THREAD" [SP 1*thread-list]). Check out->failed for out of
 * memory. */
void imap_thread_format(const struct imap_thread *t, uint32_t (*map)(uint32_t uid, void *ctx),
                        void *ctx, struct imap_envelope_out *out);

/* RFC 5256 §2.1: the base subject of a decoded subject, as a new string with white space
 * runs made single spaces (case kept). *is_reply_r (may be NULL) tells whether extraction
 * removed a subj-refwd, a "(fwd)" trailer or a [fwd: ...] wrapper, which makes the message a
 * reply or forward for REFERENCES step 5. NULL: out of memory. */
char *imap_thread_base_subject(const char *subject, bool *is_reply_r);

/* The i;ascii-casemap comparison used for base subjects (and by SORT for its strings):
 * strcmp after folding ASCII letters to lower case. */
int imap_thread_subject_cmp(const char *a, const char *b);

#endif
