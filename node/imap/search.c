/* SEARCH, SORT and THREAD (RFC 9051 §6.4.4, RFC 5256) with ESEARCH (RFC 4731), SEARCHRES
 * (RFC 5182) and CONDSTORE's MODSEQ key (RFC 7162).
 *
 * The criteria are parsed on the session's thread (proto/imap/search.h) against the view the
 * client knows; the query runs on a worker (storage/mailsearch.h) with a copy of the view's
 * UIDs, so it needs nothing from the session while it runs. Back on the session's thread the
 * matches are written as sequence numbers or UIDs, the result is saved for "$" when asked,
 * and the changes collected meanwhile are applied without EXPUNGE (RFC 9051 §7.5.1). */
#include <stdlib.h>
#include <string.h>

#include "node/imap/imap.h"
#include "node/server.h"
#include "proto/imap/search.h"
#include "proto/imap/thread.h"
#include "storage/mailsearch.h"

const char *imap_search_capabilities(void)
{
    return "ESEARCH SEARCHRES SORT THREAD=REFERENCES THREAD=ORDEREDSUBJECT";
}

struct search_job {
    struct imap_job base;
    struct imap_search_program *prog;
    bool uid;
    uint32_t *uids; /* the view's UIDs when the command started */
    size_t nuids;
    struct imap_seqset *saved; /* a copy of "$" */
    struct mailsearch_result res;
    struct imap_thread *thread;
};

static void search_destroy(struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    imap_search_program_free(&sj->prog);
    free(sj->uids);
    imap_seqset_free(&sj->saved);
    mailsearch_result_free(&sj->res);
    imap_thread_free(&sj->thread);
    free(sj);
}

static void search_work(struct imap_job *j, PGconn *db)
{
    struct search_job *sj = (struct search_job *)j;
    struct mailsearch_scope scope = {.folder_id = j->folder_id,
                                     .uids = sj->uids,
                                     .nuids = sj->nuids,
                                     .saved = sj->saved,
                                     .bs = server_blobs()};
    switch (sj->prog->command) {
    case IMAP_SEARCH_CMD_SEARCH:
        j->rc = mailsearch_search(db, &scope, sj->prog, &sj->res, j->err, sizeof(j->err));
        break;
    case IMAP_SEARCH_CMD_SORT:
        j->rc = mailsearch_sort(db, &scope, sj->prog, &sj->res, j->err, sizeof(j->err));
        break;
    case IMAP_SEARCH_CMD_THREAD:
        j->rc = mailsearch_thread(db, &scope, sj->prog, &sj->thread, j->err, sizeof(j->err));
        break;
    }
}

static uint32_t uid_to_seq(uint32_t uid, void *ctx)
{
    struct search_job *sj = ctx;
    return imap_search_uid_to_seq(sj->uids, sj->nuids, uid);
}

/* The numbers to report: UIDs, or their sequence numbers in the same order. */
static uint32_t *numbers(struct search_job *sj)
{
    uint32_t *nums = malloc((sj->res.count ? sj->res.count : 1) * sizeof(*nums));
    if (!nums)
        return NULL;
    for (size_t i = 0; i < sj->res.count; i++)
        nums[i] = sj->uid ? sj->res.uids[i] : uid_to_seq(sj->res.uids[i], sj);
    return nums;
}

static void search_done(struct imap_session *s, struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    enum imap_search_command cmd = sj->prog->command;
    bool save = cmd == IMAP_SEARCH_CMD_SEARCH && (sj->prog->ret & IMAP_SEARCH_RET_SAVE);
    if (j->rc != 0) {
        if (save) {
            /* RFC 5182 §2.1: a failed SEARCH ... RETURN (SAVE) leaves "$" empty */
            imap_seqset_free(&s->searchres);
            s->searchres = imap_seqset_new(0);
        }
        if (imap_view_apply(s, j->changes, false) < 0)
            return;
        conn_log(s->c, LOG_SUMMARY, "search failed: %s", j->err);
        imap_tagged(s, "NO", "[SERVERBUG] Search failed");
        return;
    }
    struct imap_envelope_out out = {0};
    if (cmd == IMAP_SEARCH_CMD_THREAD) {
        imap_envelope_out_add(&out, "* THREAD", 8);
        if (imap_thread_roots(sj->thread)) {
            imap_envelope_out_add(&out, " ", 1);
            imap_thread_format(sj->thread, sj->uid ? NULL : uid_to_seq, sj, &out);
        }
        imap_envelope_out_add(&out, "\r\n", 2);
    } else {
        uint32_t *nums = numbers(sj);
        if (!nums) {
            imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
            return;
        }
        if (cmd == IMAP_SEARCH_CMD_SORT)
            imap_search_format_sort(sj->prog, nums, sj->res.count, sj->res.highest_modseq, &out);
        else
            imap_search_format(sj->prog, s->tag, sj->uid, s->rev2, nums, sj->res.count,
                               sj->res.matches, sj->res.highest_modseq, &out);
        free(nums);
        if (save) {
            /* "$" always holds UIDs, whatever the command reported (RFC 5182 §2.1) */
            struct imap_seqset *set = NULL;
            if (imap_search_save_result(sj->prog, sj->res.uids, sj->res.count, &set) < 0)
                set = imap_seqset_new(0);
            imap_seqset_free(&s->searchres);
            s->searchres = set;
        }
    }
    if (out.failed) {
        imap_envelope_out_free(&out);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    imap_write(s, out.data, out.len);
    imap_envelope_out_free(&out);
    if (sj->prog->modseq)
        s->condstore = true; /* RFC 7162 §3.1 */
    if (imap_view_apply(s, j->changes, false) < 0)
        return;
    imap_tagged(s, "OK", cmd == IMAP_SEARCH_CMD_SEARCH ? "SEARCH completed"
                         : cmd == IMAP_SEARCH_CMD_SORT ? "SORT completed"
                                                       : "THREAD completed");
}

/* A copy of the saved result ("$"), or NULL when none was saved. */
static struct imap_seqset *copy_saved(const struct imap_seqset *set)
{
    if (!set)
        return NULL;
    struct imap_seqset *c = imap_seqset_new(0);
    size_t n = 0;
    const struct imap_seq_range *r = imap_seqset_ranges(set, &n);
    for (size_t i = 0; c && i < n; i++)
        if (imap_seqset_add_range(c, r[i].lo, r[i].hi) < 0)
            imap_seqset_free(&c);
    return c;
}

static void run(struct imap_session *s, enum imap_search_command cmd, const struct imap_arg *a,
                size_t n, bool uid)
{
    struct imap_search_context ctx = {
        .messages = s->view.count,
        .max_uid = s->view.count ? s->view.uids[s->view.count - 1] : 0,
    };
    struct imap_search_program *prog = NULL;
    char err[256];
    int rc = imap_search_parse(cmd, a, n, &ctx, &prog, err, sizeof(err));
    if (rc == IMAP_SEARCH_EBADCHARSET) {
        imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] %s", err);
        return;
    }
    if (rc == IMAP_SEARCH_ENOMEM) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    if (rc != 0) {
        imap_tagged(s, "BAD", "%s", err);
        return;
    }
    struct search_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_search_program_free(&prog);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->base.destroy = search_destroy;
    sj->prog = prog;
    sj->uid = uid;
    sj->nuids = s->view.count;
    sj->uids = malloc((sj->nuids ? sj->nuids : 1) * sizeof(*sj->uids));
    sj->saved = copy_saved(s->searchres);
    if (!sj->uids || (s->searchres && !sj->saved)) {
        search_destroy(&sj->base);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    if (sj->nuids)
        memcpy(sj->uids, s->view.uids, sj->nuids * sizeof(*sj->uids));
    sj->base.work = search_work;
    sj->base.done = search_done;
    imap_job_submit(s, &sj->base, true);
}

void imap_cmd_search(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    run(s, IMAP_SEARCH_CMD_SEARCH, a, n, uid);
}

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    run(s, IMAP_SEARCH_CMD_SORT, a, n, uid);
}

void imap_cmd_thread(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    run(s, IMAP_SEARCH_CMD_THREAD, a, n, uid);
}
