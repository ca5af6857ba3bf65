/* libFuzzer harness for the SEARCH / SORT / THREAD program parser (proto/imap/search.c) and,
 * on what it yields, the response formatting and the threading code (proto/imap/thread.c).
 *
 * The first byte picks the command (bits 0-1: SEARCH, SORT, THREAD, UID SEARCH) and what "*"
 * stands for (the rest); the other bytes follow "t <command> " as a client would send them,
 * and go through the real command reader (parser.c), so the argument trees are the ones a
 * session sees. Every complete command is parsed. Checks: success gives a program within the
 * limits (keys, nesting, sort criteria; NOT one child, OR two; strings NUL-terminated valid
 * UTF-8; sets sorted, disjoint, from 1), failure gives a message and no program; the responses made
 * from a fake result are well-formed lines; the program's strings, used as subjects, message IDs
 * and references of a handful of messages, thread under both algorithms into trees holding
 * each message exactly once, whose formatted text has balanced parentheses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/parser.h"
#include "proto/imap/search.h"
#include "proto/imap/thread.h"
#include "proto/text/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 24

struct walk {
    size_t keys;
    const char *strings[MAX_MSGS];
    size_t nstrings;
};

static void check_key(const struct imap_search_key *k, unsigned depth, struct walk *w)
{
    if (depth > IMAP_SEARCH_MAX_DEPTH + 1)
        abort();
    w->keys++;
    if (k->op == IMAP_SEARCH_NOT && k->nchildren != 1)
        abort();
    if (k->op == IMAP_SEARCH_OR && k->nchildren != 2)
        abort();
    if (k->op != IMAP_SEARCH_AND && k->op != IMAP_SEARCH_OR && k->op != IMAP_SEARCH_NOT &&
        k->nchildren)
        abort();
    if (k->str) {
        if (!utf8_check(k->str, strlen(k->str), 0) || strlen(k->str) > IMAP_SEARCH_MAX_STRING)
            abort();
        if (w->nstrings < MAX_MSGS)
            w->strings[w->nstrings++] = k->str;
    }
    if (k->op == IMAP_SEARCH_HEADER && (!k->field || !k->field[0] || strchr(k->field, ':')))
        abort();
    if (k->op == IMAP_SEARCH_SEQSET || k->op == IMAP_SEARCH_UIDSET) {
        if (!k->set || imap_seqset_is_saved(k->set))
            abort();
        size_t n;
        const struct imap_seq_range *r = imap_seqset_ranges(k->set, &n);
        for (size_t i = 0; i < n; i++)
            if (r[i].lo == 0 || r[i].lo > r[i].hi || (i && (uint64_t)r[i - 1].hi + 1 >= r[i].lo))
                abort();
    }
    for (size_t i = 0; i < k->nchildren; i++)
        check_key(&k->children[i], depth + 1, w);
}

/* Counts the messages in a thread tree (each must be there once) without recursion. */
static size_t count_nodes(const struct imap_thread *t, const uint32_t *uids, size_t n,
                          unsigned char *seen)
{
    size_t count = 0;
    const struct imap_thread_node **stack = malloc((4 * n + 8) * sizeof(*stack));
    if (!stack)
        return n;
    size_t depth = 0;
    for (const struct imap_thread_node *r = imap_thread_roots(t); r; r = r->next) {
        stack[depth++] = r;
        while (depth) {
            const struct imap_thread_node *c = stack[--depth];
            if (c->uid) {
                size_t i = 0;
                while (i < n && uids[i] != c->uid)
                    i++;
                if (i == n || seen[i]++)
                    abort();
                count++;
            }
            for (const struct imap_thread_node *ch = c->child; ch; ch = ch->next) {
                if (depth >= 4 * n + 8)
                    abort(); /* more nodes than messages and dummies can make */
                stack[depth++] = ch;
            }
        }
    }
    free(stack);
    return count;
}

static void check_threads(const struct walk *w)
{
    struct imap_thread_msg msgs[MAX_MSGS];
    uint32_t uids[MAX_MSGS];
    size_t n = w->nstrings;
    for (size_t i = 0; i < n; i++) {
        uids[i] = (uint32_t)(i * 3 + 1);
        msgs[i] = (struct imap_thread_msg){.uid = uids[i],
                                           .date = (int64_t)((i * 7) % 5),
                                           .subject = w->strings[i],
                                           .message_id = w->strings[(i + 1) % n],
                                           .in_reply_to = w->strings[(i + 2) % n],
                                           .references = i % 2 ? w->strings[i] : ""};
    }
    for (int alg = 0; alg < 2; alg++) {
        struct imap_thread *t = NULL;
        if (imap_thread_build(alg ? IMAP_THREAD_REFERENCES : IMAP_THREAD_ORDEREDSUBJECT, msgs, n,
                              &t) < 0)
            continue; /* out of memory only */
        unsigned char seen[MAX_MSGS] = {0};
        if (count_nodes(t, uids, n, seen) != n)
            abort();
        struct imap_envelope_out out = {0};
        imap_thread_format(t, NULL, NULL, &out);
        long open = 0;
        for (size_t i = 0; !out.failed && i < out.len; i++) {
            if (out.data[i] == '(')
                open++;
            else if (out.data[i] == ')' && --open < 0)
                abort();
            else if (out.data[i] == '0' &&
                     (i == 0 || out.data[i - 1] < '0' || out.data[i - 1] > '9'))
                abort(); /* no number 0 (a dummy) is ever written */
        }
        if (open != 0 || (n > 0 && !out.failed && out.len == 0))
            abort();
        imap_envelope_out_free(&out);
        imap_thread_free(&t);
    }
    for (size_t i = 0; i < n; i++) {
        bool reply;
        char *b = imap_thread_base_subject(w->strings[i], &reply);
        if (!b)
            continue;
        if (strlen(b) > strlen(w->strings[i]) || (b[0] == ' ') || (b[0] && b[strlen(b) - 1] == ' '))
            abort();
        /* a base subject is its own base subject */
        char *again = imap_thread_base_subject(b, NULL);
        if (again && strcmp(again, b) != 0)
            abort();
        free(again);
        free(b);
    }
}

static void run_command(const struct imap_command *c, enum imap_search_command cmd,
                        uint32_t messages, uint32_t max_uid)
{
    size_t skip = strcmp(c->name, "UID") == 0 ? 1 : 0;
    if (skip > c->count)
        return;
    struct imap_search_context ctx = {.messages = messages, .max_uid = max_uid};
    struct imap_search_program *prog = (struct imap_search_program *)&ctx; /* must be reset */
    char err[256] = "";
    const struct imap_arg *args = c->count ? c->args + skip : NULL; /* no args: NULL */
    int rc = imap_search_parse(cmd, args, c->count - skip, &ctx, &prog, err, sizeof(err));
    if (rc != 0) {
        if (prog || !err[0] ||
            (rc != IMAP_SEARCH_EBAD && rc != IMAP_SEARCH_EBADCHARSET && rc != IMAP_SEARCH_ENOMEM))
            abort();
        return;
    }
    if (!prog || prog->command != cmd || prog->root.op != IMAP_SEARCH_AND ||
        prog->root.nchildren == 0 || prog->nkeys > IMAP_SEARCH_MAX_KEYS ||
        prog->nsort > IMAP_SEARCH_MAX_SORT || (cmd == IMAP_SEARCH_CMD_SORT && prog->nsort == 0))
        abort();
    if (prog->esearch && prog->ret == 0)
        abort();
    struct walk w = {0};
    check_key(&prog->root, 0, &w);
    if (w.keys > prog->nkeys + 2 * IMAP_SEARCH_MAX_KEYS)
        abort(); /* normalisation adds at most two nodes per key */

    /* responses from a fake result */
    static const uint32_t nums[] = {1, 2, 3, 7, 9, 10, 4000000000u};
    struct imap_envelope_out out = {0};
    imap_search_format(prog, c->tag, skip == 1, messages & 1, nums, 7, 7, 42, &out);
    if (!out.failed && out.len) {
        if (out.len < 4 || memcmp(out.data, "* ", 2) != 0 ||
            memcmp(out.data + out.len - 2, "\r\n", 2) != 0 || memchr(out.data, '\n', out.len - 1))
            abort();
    }
    imap_envelope_out_free(&out);
    imap_search_format_sort(prog, nums, 7, 42, &out);
    imap_envelope_out_free(&out);
    struct imap_seqset *saved = NULL;
    if (imap_search_save_result(prog, nums, 7, &saved) == 0) {
        if (imap_seqset_count(saved) == 0 || imap_seqset_count(saved) > 7)
            abort();
        imap_seqset_free(&saved);
    }
    check_threads(&w);
    imap_search_program_free(&prog);
    if (prog)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const prefixes[] = {"t SEARCH ", "t SORT ", "t THREAD ", "t UID SEARCH "};
    static const enum imap_search_command cmds[] = {IMAP_SEARCH_CMD_SEARCH, IMAP_SEARCH_CMD_SORT,
                                                    IMAP_SEARCH_CMD_THREAD, IMAP_SEARCH_CMD_SEARCH};
    unsigned mode = data[0] & 3;
    uint32_t messages = (uint32_t)(data[0] >> 2) * 3;
    uint32_t max_uid = messages ? messages * 1000u + 7 : 0;
    size_t plen = strlen(prefixes[mode]);
    char *in = malloc(plen + size + 2);
    if (!in)
        return 0;
    memcpy(in, prefixes[mode], plen);
    memcpy(in + plen, data + 1, size - 1);
    memcpy(in + plen + size - 1, "\r\n", 2);
    size_t len = plen + size + 1;

    struct imap_parser *p = imap_parser_new(NULL);
    if (!p) {
        free(in);
        return 0;
    }
    size_t off = 0, stalls = 0;
    while (off < len) {
        size_t used = 0;
        enum imap_parse_event ev = imap_parser_feed(p, in + off, len - off, &used);
        off += used;
        stalls = used ? 0 : stalls + 1;
        if (stalls > 3)
            break;
        if (ev == IMAP_PARSE_COMMAND) {
            run_command(imap_parser_command(p), cmds[mode], messages, max_uid);
            imap_parser_next(p);
        } else if (ev == IMAP_PARSE_LITERAL) {
            imap_parser_literal_refuse(p);
        } else if (ev == IMAP_PARSE_ERROR && imap_parser_error_fatal(p)) {
            break;
        } else if (ev == IMAP_PARSE_MORE) {
            break;
        }
    }
    imap_parser_free(&p);
    free(in);
    return 0;
}
