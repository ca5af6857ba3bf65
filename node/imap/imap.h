/* The IMAP service (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1) on the shared mail store: the
 * contract between the files of node/imap/.
 *
 *   session.c   connection callbacks, input (parser, COMPRESS inflate), output, the command
 *               table, the commands of every state, authentication, STARTTLS, IDLE
 *   job.c       worker jobs: every storage call runs on a worker, a job owns its data
 *   view.c      the selected mailbox as the client sees it (UIDs in sequence order, what the
 *               client has been told) and bringing it up to date (EXISTS/EXPUNGE/FETCH)
 *   notify.c    "mailbox changed" notifications: the cluster bus, local changes, polling
 *   mailbox.c   SELECT, EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, STATUS,
 *               NAMESPACE, CLOSE, UNSELECT
 *   names.c     the namespaces: personal folders, other users' shared folders ("~user@domain/..."),
 *               public folders (group accounts); names to folders and rights (RFC 2342, RFC 4314)
 *   fetch.c     FETCH: items, sections from the stored part offsets, BINARY decoding, streamed
 *               literals with bounded memory
 *   fetchspec.c FETCH item and section parsing, transfer decoding (pure, unit-tested, fuzzed)
 *   store.c     STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE
 *   append.c    APPEND and MULTIAPPEND, literals spooled to a file and ingested on a worker
 *   acl.c       ACL (RFC 4314) and QUOTA (RFC 9208)
 *   compress.c  COMPRESS=DEFLATE (RFC 4978)
 *   search.c    SEARCH, SORT, THREAD: the place where the search engine plugs in
 *
 * Threads. A session lives on its connection's I/O thread. Work that blocks runs as a job on a
 * worker (imap_job_submit); while one runs the session is busy: input is paused and kept in the
 * session's buffer, so commands are answered in order. A job copies what it needs from the
 * session and hands results back in done(), which runs on the session's thread only while the
 * connection is open. */
#ifndef FLOE_NODE_IMAP_H
#define FLOE_NODE_IMAP_H

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/conn.h"
#include "node/workers.h"
#include "proto/imap/envelope.h"
#include "proto/imap/parser.h"
#include "proto/imap/seqset.h"
#include "storage/acl.h"
#include "storage/directory.h"
#include "storage/folders.h"

struct runtime;
struct sasl_server;
struct imap_compress;
struct imap_append;
struct imap_session;

/* Longest tag kept (RFC 9051 puts no limit; a longer one gets "* BAD"). */
#define IMAP_TAG_MAX 128
/* Unprocessed input held by a session (paused while a job runs, so a read or two). */
#define IMAP_INPUT_MAX (1024 * 1024)
/* Output is handed to the connection in pieces of about this size. */
#define IMAP_OUTPUT_CHUNK (256 * 1024)
/* Messages in one selected mailbox the session keeps a view of. */
#define IMAP_VIEW_MAX 5000000u
/* Failed logins before the connection is closed, and the delay before each NO. */
#define IMAP_AUTH_FAILURES_MAX 3
#define IMAP_AUTH_DELAY_MS 1000
/* Folders a LIST considers. */
#define IMAP_LIST_MAX 100000
/* Bytes of a namespace prefix ([service imap] shared_prefix, public_prefix), and the defaults
 * (seed 000: the shared-account prefix is "~" by default). */
#define IMAP_SHARED_PREFIX "~"
#define IMAP_PUBLIC_PREFIX "Public Folders/"

#define IMAP_PREFIX_MAX 64
/* Bytes of a mailbox name as the client sees it: a prefix, an owner's address, a path. */
#define IMAP_NAME_MAX (IMAP_PREFIX_MAX + DIR_ADDRESS_SIZE + FOLDERS_PATH_MAX + 1)

enum imap_state {
    IMAP_NOTAUTH,
    IMAP_AUTH,
    IMAP_SELECTED,
    IMAP_LOGOUT,
};
#define IMAP_ST_NOTAUTH (1u << IMAP_NOTAUTH)
#define IMAP_ST_AUTH (1u << IMAP_AUTH)
#define IMAP_ST_SELECTED (1u << IMAP_SELECTED)
#define IMAP_ST_ANY (IMAP_ST_NOTAUTH | IMAP_ST_AUTH | IMAP_ST_SELECTED)
#define IMAP_ST_AUTHED (IMAP_ST_AUTH | IMAP_ST_SELECTED)

/* [service imap] settings, read once per session (docs/CONFIG.md). */
struct imap_settings {
    bool login_disabled_plain; /* LOGINDISABLED / no PLAIN, LOGIN without TLS */
    uint64_t append_limit;     /* APPENDLIMIT: largest message APPEND takes */
    unsigned poll_interval;    /* seconds between checks while IDLE without the bus */
    unsigned max_errors;       /* BAD replies before the session ends */
    unsigned idle_timeout;     /* the service's idle timeout */
    /* namespaces (names.c): other users' folders, public folders */
    char shared_prefix[IMAP_PREFIX_MAX + 1];
    char public_prefix[IMAP_PREFIX_MAX + 1];
};

/* The selected mailbox as this client knows it (RFC 9051 §2.3.1.2): message sequence number n
 * is uids[n - 1]. Only this session's thread touches it. */
struct imap_view {
    long long folder_id;
    long long owner_id; /* the folder's account (modseqs and tombstones are per account) */
    char path[IMAP_NAME_MAX + 1]; /* the name the client selected, canonical */
    bool readonly;                /* EXAMINE, or rights that allow no change (RFC 4314 §5.2) */
    unsigned rights;              /* storage/acl.h mask at SELECT (ACL_ALL in one's own folders) */
    uint32_t uidvalidity;
    uint32_t *uids;     /* ascending */
    long long *modseqs; /* per message, the modseq of the state last reported */
    uint32_t count, cap;
    /* every change up to this modseq has been taken in */
    long long known_modseq;
    /* expunged by someone else, not yet announced (no EXPUNGE allowed then); still in uids */
    uint32_t *gone;
    uint32_t ngone, gone_cap;
};

struct imap_session {
    struct conn *c;
    struct runtime *rt;
    struct imap_settings cfg;
    enum imap_state state;
    int depth;   /* our callbacks on the stack */
    bool closed; /* on_close has run: resources are released when depth returns to 0 */
    bool busy;   /* a job, a delay or a drain wait: input is not processed */
    bool freed;
    unsigned errors, auth_failures;

    struct imap_parser *parser;
    char *in; /* plaintext input not yet fed to the parser */
    size_t inlen, inoff;
    char *zin; /* with COMPRESS: deflated input not yet inflated */
    size_t zinlen;
    struct imap_envelope_out out; /* output not yet handed to the connection */
    struct imap_compress *z;

    char tag[IMAP_TAG_MAX + 1]; /* of the command in progress */
    uint64_t cmd_started_ns;
    bool in_dispatch, want_line; /* a command asked for a raw line next */

    /* authentication */
    struct sasl_server *sasl;
    bool in_sasl;
    struct dir_account account;
    char delayed[256]; /* the NO of a failed login, sent after the delay */

    /* ENABLE (RFC 5161) */
    bool condstore, qresync, utf8, rev2;

    struct imap_view view;

    /* IDLE (RFC 2177) and change notifications */
    bool idling;
    long long notified_modseq; /* the newest change announced for the selected mailbox */
    uv_timer_t timer;
    bool timer_ready;
    int timer_mode;
    uint64_t last_poll_ns;
    struct imap_session *watch_next, *watch_prev;
    bool watching;

    /* APPEND in progress: spool files of streamed literals */
    struct imap_append *append;

    /* FETCH streaming: a job waiting for the output to drain, and drain events seen (the
     * idle timeout closes a client that stopped reading) */
    struct imap_job *drain_job;
    uint64_t progress, progress_seen;

    /* SEARCHRES (RFC 5182): the saved result, UIDs; NULL until a SEARCH saves one */
    struct imap_seqset *searchres;
};

/* ---- output (session.c) ---- */

__attribute__((format(printf, 2, 3))) void imap_printf(struct imap_session *s, const char *fmt,
                                                       ...);
void imap_write(struct imap_session *s, const void *data, size_t len);
/* A mailbox name as the client reads it: modified UTF-7 (RFC 3501 §5.1.3), or UTF-8 (utf8:
 * after ENABLE UTF8=ACCEPT / IMAP4rev2), quoted or literal as needed. Usable on workers. */
void imap_put_mailbox(struct imap_envelope_out *out, const char *path, bool utf8);
/* The tagged reply of the command in progress ("OK", "NO", "BAD"); counts it in the metrics,
 * BAD replies towards max_errors. */
__attribute__((format(printf, 3, 4))) void imap_tagged(struct imap_session *s, const char *status,
                                                       const char *fmt, ...);
/* Hands buffered output to the connection (through COMPRESS when active). */
void imap_flush(struct imap_session *s);
/* The capability list for this session's state (no "CAPABILITY" prefix). */
void imap_capabilities(struct imap_session *s, struct imap_envelope_out *out);

/* ---- input helpers (session.c) ---- */

/* A mailbox name argument to a storage path (UTF-8, '/' separated, INBOX canonical, no
 * trailing '/'). 0, or -1 after answering BAD/NO. */
int imap_arg_mailbox(struct imap_session *s, const struct imap_arg *a, char *path, size_t pathlen);
/* A sequence set argument resolved against the view: UID ranges of messages the client knows,
 * merged so that no range spans a known message outside the set. *ranges_r may be NULL when nothing
 * matched. 0, or -1 after answering BAD. */
struct uid_range;
int imap_arg_seqset(struct imap_session *s, const struct imap_arg *a, bool uid,
                    struct uid_range **ranges_r, size_t *nranges_r);
/* Parses a flag list or a single flag into bits and keywords (pointers into the argument,
 * valid until imap_parser_next). 0, or -1 after answering BAD. */
int imap_arg_flags(struct imap_session *s, const struct imap_arg *a, unsigned *flags_r,
                   const char **kw, size_t kwmax, size_t *nkw_r);
/* Starts reading a raw line (AUTHENTICATE responses, IDLE's DONE). */
void imap_read_line(struct imap_session *s);
/* The session is done with a command that kept it busy (a delay or a wait): flushes output
 * and goes on with buffered input. */
void imap_unbusy(struct imap_session *s);
/* Brackets our callbacks (the connection may close inside them: session resources are
 * released when the outermost one returns). */
void imap_session_enter(struct imap_session *s);
void imap_session_leave(struct imap_session *s);

/* ---- worker jobs (job.c) ---- */

struct imap_changes;

struct imap_job {
    struct job job;
    struct conn *c;
    /* on a worker, with its database connection */
    void (*work)(struct imap_job *j, PGconn *db);
    /* back on the session's thread, connection open */
    void (*done)(struct imap_session *s, struct imap_job *j);
    /* frees the job and everything it owns (NULL: free(j)) */
    void (*destroy)(struct imap_job *j);
    int rc;
    char err[256];
    long long account_id;
    /* the session's settings (namespaces): the session outlives its jobs, and its settings do
     * not change after the connection opened */
    const struct imap_settings *cfg;
    /* filled by imap_job_submit when a mailbox is selected (folder_id, owner_id: unless the
     * caller set them); with a sync the job also collects what changed in it since the view's
     * known modseq */
    bool sync;
    long long folder_id, owner_id, since;
    struct imap_changes *changes;
    /* set while done() runs when the job was handed on (resubmitted, or parked until the
     * output drains): it is then not destroyed */
    bool keep;
    /* a full worker queue is not answered with a tagged NO (background refresh in IDLE) */
    bool quiet;
};

/* Submits j (allocated by the caller, zeroed, work/done set). The session is busy until done()
 * has run. with_sync: also collect the selected mailbox's changes. On a full queue answers
 * "NO [UNAVAILABLE]" to the command in progress and destroys j; returns -1 then. */
int imap_job_submit(struct imap_session *s, struct imap_job *j, bool with_sync);
/* Submits j again, from its done() or once the output drained (FETCH streaming). On a full
 * queue it answers like imap_job_submit and returns -1 without destroying j: from done() the
 * job is destroyed afterwards, elsewhere the caller destroys it. */
int imap_job_resubmit(struct imap_session *s, struct imap_job *j);
/* From done(): keeps j until imap_job_resubmit once the output has drained (session.c calls
 * imap_fetch_drained). The session stays busy meanwhile. */
void imap_job_park(struct imap_session *s, struct imap_job *j);
void imap_job_destroy(struct imap_job *j);

/* ---- the selected mailbox (view.c) ---- */

/* What changed in a folder since a modseq, collected on a worker. */
struct imap_change_row {
    uint32_t uid;
    unsigned flags;
    long long modseq;
    char *keywords; /* space-separated, "" for none */
};
struct imap_changes {
    bool folder_gone;
    long long highest; /* the folder's highest modseq when the collection began */
    struct imap_change_row *rows;
    size_t nrows, caprows;
    uint32_t *expunged; /* UIDs, any order */
    size_t nexpunged, capexpunged;
    bool full;     /* tombstones were purged: all_uids holds every UID of the folder */
    uint32_t *all; /* ascending when full */
    size_t nall, capall;
    bool failed;
};

/* On a worker: the changes of folder_id (owned by owner_id) after since. 0 or -1 (err). */
int imap_changes_collect(PGconn *db, long long owner_id, long long folder_id, long long since,
                         struct imap_changes *ch, char *err, size_t errlen);
void imap_changes_free(struct imap_changes **ch);
/* On the session's thread: takes changes into the view, writing EXISTS and FETCH responses,
 * and EXPUNGE / VANISHED when allow_expunge (RFC 9051 §7.5.1: not during FETCH, STORE,
 * SEARCH). Returns -1 when the mailbox is gone (the session has said BYE). */
int imap_view_apply(struct imap_session *s, struct imap_changes *ch, bool allow_expunge);
/* This session's own EXPUNGE / MOVE: announces uids[0..n) (any order; sorted in place) and
 * removes them from the view. */
void imap_view_expunge(struct imap_session *s, uint32_t *uids, size_t n);
/* Announces expunges found earlier (NOOP, IDLE, after commands that allow them). */
void imap_view_flush_gone(struct imap_session *s);
/* The sequence number of uid (1-based), 0 when the view does not hold it. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
void imap_view_clear(struct imap_view *v);
/* Appends the FLAGS list "(\Seen kw ...)" of flags and space-separated keywords. */
void imap_flags_append(struct imap_envelope_out *out, unsigned flags, const char *keywords);
/* Sets the per-message modseq the client has been told of (after our own STORE). */
void imap_view_set_modseq(struct imap_view *v, uint32_t uid, long long modseq);

/* ---- namespaces (names.c) ---- */

enum imap_ns {
    IMAP_NS_PERSONAL = 0, /* the account's own folders */
    IMAP_NS_SHARED,       /* other users' folders: shared_prefix + address + "/" + path */
    IMAP_NS_PUBLIC,       /* group accounts' folders: public_prefix + address + "/" + path */
};

/* A client's mailbox name split by namespace. */
struct imap_name {
    enum imap_ns ns;
    char owner[DIR_ADDRESS_SIZE];    /* shared, public: the owner's address ("": the prefix) */
    char path[FOLDERS_PATH_MAX + 1]; /* in the owner's tree, canonical; "": the owner itself */
};

/* Checks a namespace prefix from the configuration: 1..IMAP_PREFIX_MAX bytes of UTF-8, no
 * control characters, no '%' or '*', no leading '/', no "//", not starting with "INBOX". 0 or -1
 * with the reason in err. */
int imap_prefix_check(const char *prefix, char *err, size_t errlen);
/* Splits a UTF-8 mailbox name (no trailing '/') by namespace; the longer prefix is tried first.
 * 0, or -1 with the reason in err (a path that storage/folders.h refuses, an address too long). */
int imap_name_split(const struct imap_settings *cfg, const char *name, struct imap_name *n_r,
                    char *err, size_t errlen);
/* The client's name of path (may be "") of owner in ns. 0, or -1 when out is too small. */
int imap_name_join(const struct imap_settings *cfg, enum imap_ns ns, const char *owner,
                   const char *path, char *out, size_t outlen);

/* A mailbox name resolved on a worker. */
struct imap_mailbox {
    struct imap_name name;
    long long owner_id; /* 0 when the owner is unknown */
    char owner_addr[DIR_ADDRESS_SIZE];
    bool container; /* names a namespace or an owner, not a folder */
    bool found;     /* f is the folder */
    struct folder f;
    unsigned rights; /* on f: ACL_ALL in one's own folders; 0 when not found */
};
#define IMAP_MB_ENOTFOUND (-2)
/* Resolves a canonical client name for account_id. 0: a folder the account has a right on (or
 * its own), or a container (the namespace, or an owner of the namespace's kind other than the
 * account); IMAP_MB_ENOTFOUND: no such folder, or one the account has no right on (mb->name,
 * and owner_id when the owner exists, are still filled, for CREATE); -1: database error. */
int imap_mailbox_resolve(PGconn *db, long long account_id, const struct imap_settings *cfg,
                         const char *name, struct imap_mailbox *mb, char *err, size_t errlen);
/* The rights account_id has now on folder_id of owner_id (ACL_ALL when it owns it; 0 on any
 * failure). */
unsigned imap_rights_now(PGconn *db, long long account_id, long long folder_id, long long owner_id);
/* The "NO" of a folder the account may see but lacks right for: "[NOPERM] ..." when it has
 * lookup ("l"), else as if the folder did not exist (RFC 4314 §4). */
const char *imap_noperm_text(unsigned rights);

/* ---- notifications (notify.c) ---- */

/* Registers the service with the cluster bus; called once at start-up. */
void imap_notify_init(void);
/* The session wants to hear about changes of its account (on its own thread). */
void imap_notify_watch(struct imap_session *s);
void imap_notify_unwatch(struct imap_session *s);
/* A change made through this node: tells the cluster (and this node's sessions directly when
 * the bus is not connected). kind: the bus's MailboxChange.Kind. */
void imap_notify_publish(long long account_id, long long folder_id, long long modseq, int kind);
/* Delivered on the session's thread (session.c). */
void imap_session_changed(struct imap_session *s, long long folder_id, long long modseq);

/* ---- commands ---- */

typedef void (*imap_command_fn)(struct imap_session *s, const struct imap_arg *args, size_t nargs,
                                bool uid);

/* mailbox.c */
void imap_cmd_select(struct imap_session *s, const struct imap_arg *a, size_t n, bool examine);
void imap_cmd_create(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_delete(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_rename(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *a, size_t n, bool on);
void imap_cmd_list(struct imap_session *s, const struct imap_arg *a, size_t n, bool lsub);
void imap_cmd_status(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_namespace(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_close(struct imap_session *s, const struct imap_arg *a, size_t n, bool unselect);
/* Leaves the selected state (no expunge); says [CLOSED] when announce. */
void imap_unselect(struct imap_session *s, bool announce);

/* fetch.c */
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
/* The connection's output fell below its low-water mark (session.c on_drained). */
void imap_fetch_drained(struct imap_session *s);

/* store.c */
void imap_cmd_store(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_move(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
/* Expunges the selected mailbox's \Deleted messages; silent (CLOSE, RFC 9051 §6.4.1): no
 * responses, then back to the authenticated state. */
void imap_expunge_start(struct imap_session *s, bool silent);
/* A job that only brings the view up to date (NOOP, CHECK, IDLE), then answers OK with text
 * when text is not NULL. */
void imap_sync_start(struct imap_session *s, const char *text);

/* append.c */
void imap_cmd_append(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
/* A literal over the parser's buffer limit arrived in an APPEND: stream it to a spool file.
 * Returns false when it must be refused (the caller answers [TOOBIG]). */
bool imap_append_literal_start(struct imap_session *s, const struct imap_literal_info *info);
/* Streamed literal bytes; -1 when the spool cannot take them (the session is aborted). */
int imap_append_literal_data(struct imap_session *s, const char *data, size_t len);
void imap_append_free(struct imap_append **a);

/* acl.c */
void imap_cmd_getacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_setacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_deleteacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_listrights(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_myrights(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_getquota(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_setquota(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);

/* search.c: SEARCH, SORT, THREAD (and their UID forms). */
void imap_cmd_search(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_sort(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
void imap_cmd_thread(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid);
/* Capabilities the search engine adds (ESEARCH, SEARCHRES, SORT, THREAD=...): "" until then. */
const char *imap_search_capabilities(void);

/* compress.c (RFC 4978) */
struct imap_compress *imap_compress_new(void);
void imap_compress_free(struct imap_compress **z);
/* Deflates in[0..len) with a sync flush, appending to out. -1 on failure. */
int imap_compress_deflate(struct imap_compress *z, const void *in, size_t len,
                          struct imap_envelope_out *out);
/* Inflates from in[0..inlen) into out[0..outcap): *used_r input bytes taken, *made_r produced.
 * -1 on a corrupt stream. */
int imap_compress_inflate(struct imap_compress *z, const void *in, size_t inlen, size_t *used_r,
                          void *out, size_t outcap, size_t *made_r);

#endif
