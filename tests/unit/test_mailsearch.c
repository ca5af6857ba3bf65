/* layer: storage */
/* Tests for storage/mailsearch against a real PostgreSQL: five messages delivered through
 * storage/ingest (so every column is filled as in production) and searched with every key
 * (flags, keywords, \Recent, the three date families with time zones, sizes, OLDER/YOUNGER,
 * MODSEQ, address and subject substrings, BODY/TEXT through the full-text index, HEADER on
 * stored columns and on the raw header, BCC, sequence sets through a view, UID sets, "$"),
 * the RETURN optimisations and their MODSEQ, SQL text in user strings, SORT on every
 * criterion (in SQL and in C), THREAD with both algorithms, and a raw-header search over more
 * rows than one page. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/imap/parser.h"
#include "proto/imap/search.h"
#include "proto/imap/thread.h"
#include "storage/blob.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/ingest.h"
#include "storage/mailsearch.h"
#include "storage/mailstore.h"
#include "support/testdb.h"

static PGconn *conn;
static struct blob_store *bs;
static long long alice, inbox, bulk;
static long long modseq_keyword; /* the modseq STORE gave message 4 */
static const uint32_t all_uids[] = {1, 2, 3, 4, 5};
static struct mailsearch_scope scope;
static size_t sizes[6];

/* ---- the messages ---- */

static const char m1[] = "Date: Tue, 1 Feb 1994 10:00:00 +0000\r\n"
                         "From: \"Alice Example\" <alice@example.test>\r\n"
                         "To: Bob <bob@example.test>\r\n"
                         "Cc: carol@example.test\r\n"
                         "Subject: Quarterly report\r\n"
                         "Message-ID: <m1@example.test>\r\n"
                         "X-Spam: no\r\n"
                         "Content-Type: text/plain; charset=us-ascii\r\n"
                         "\r\n"
                         "The quick brown fox jumps over the lazy dog.\r\n";

static const char m2[] = "Date: Wed, 2 Feb 1994 09:00:00 +0000\r\n"
                         "From: Bob <bob@example.test>\r\n"
                         "To: alice@example.test\r\n"
                         "Bcc: secret@example.test\r\n"
                         "Subject: Re: Quarterly report\r\n"
                         "Message-ID: <m2@example.test>\r\n"
                         "In-Reply-To: <m1@example.test>\r\n"
                         "References: <m1@example.test>\r\n"
                         "X-Spam: YES please\r\n"
                         "X-Long: first part\r\n"
                         " folded second part\r\n"
                         "\r\n"
                         "Numbers attached. Report looks fine.\r\n";

/* no Date: its sent date is its internal date */
static const char m3[] = "From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.test>\r\n"
                         "To: \"Doe, John\" <john@example.test>\r\n"
                         "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin\r\n"
                         "Message-ID: <m3@example.test>\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n"
                         "\r\n"
                         "Herzliche Gr\xc3\xbc\xc3\x9f"
                         "e aus Berlin.\r\n"
                         "%PAD%";

static const char m4[] = "Date: Thu, 3 Feb 1994 23:30:00 -0800\r\n"
                         "From: carol@example.test\r\n"
                         "To: alice@example.test, bob@example.test\r\n"
                         "Subject: [list] Lunch?\r\n"
                         "Message-ID: <m4@example.test>\r\n"
                         "\r\n"
                         "lunch plans for friday\r\n";

static const char m5[] = "Date: Sat, 10 Jan 2026 08:00:00 +0000\r\n"
                         "From: Aaron Dave <dave@example.test>\r\n"
                         "To: =?UTF-8?Q?=C3=81ngel?= <angel@example.test>\r\n"
                         "Subject: Fwd: Lunch?\r\n"
                         "Message-ID: <m5@example.test>\r\n"
                         "\r\n"
                         "see below\r\n";

static time_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return timegm(&tm);
}

static void deliver(const char *text, unsigned flags, time_t idate, uint32_t want_uid)
{
    char *msg = strdup(text);
    assert_non_null(msg);
    char *pad = strstr(msg, "%PAD%");
    if (pad) { /* make message 3 the largest */
        size_t off = (size_t)(pad - msg);
        char *big = malloc(off + 2100 + 1);
        assert_non_null(big);
        memcpy(big, msg, off);
        for (size_t i = 0; i < 2100; i += 70) {
            memset(big + off + i, 'x', 68);
            memcpy(big + off + i + 68, "\r\n", 2);
        }
        big[off + 2100] = '\0';
        free(msg);
        msg = big;
    }
    uint32_t uid;
    long long ms;
    char err[256];
    if (mail_deliver(conn, bs, alice, inbox, msg, strlen(msg), flags, idate, false, &uid, &ms, err,
                     sizeof(err)) != 0)
        fail_msg("deliver: %s", err);
    assert_int_equal(uid, want_uid);
    sizes[uid] = strlen(msg);
    free(msg);
}

static int group_setup(void **state)
{
    (void)state;
    char err[256];
    struct blob_config cfg = {.backend = "pg"};
    bs = blob_store_open(&cfg, err, sizeof(err));
    if (!bs)
        fail_msg("blob store: %s", err);
    if (dir_domain_add(conn, "example.test", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    if (dir_account_add(conn, "alice@example.test", "user", NULL, "", false, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    struct dir_account a;
    assert_int_equal(dir_account_find(conn, "alice@example.test", &a, err, sizeof(err)), 0);
    alice = a.id;
    struct folder f;
    if (folders_find_path(conn, alice, "INBOX", &f) != 0 &&
        folders_create(conn, alice, "INBOX", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &f, err,
                       sizeof(err)))
        fail_msg("%s", err);
    inbox = f.id;
    if (folders_create(conn, alice, "Bulk", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &f, err,
                       sizeof(err)))
        fail_msg("%s", err);
    bulk = f.id;
    deliver(m1, MAIL_SEEN, utc(1994, 2, 1, 12, 0), 1);
    deliver(m2, MAIL_ANSWERED | MAIL_FLAGGED, utc(1994, 2, 2, 12, 0), 2);
    deliver(m3, MAIL_DELETED | MAIL_DRAFT, utc(1994, 2, 4, 9, 0), 3);
    deliver(m4, 0, utc(1994, 2, 5, 8, 0), 4);
    deliver(m5, MAIL_SEEN, utc(2026, 1, 10, 9, 0), 5);
    /* a keyword on message 4, which also makes its modseq the highest */
    const char *kw[] = {"$Work"};
    struct uid_range r4 = {4, 4};
    assert_int_equal(mailstore_store(conn, alice, inbox, &r4, 1, MAIL_FLAGS_ADD, 0, kw, 1, 0, NULL,
                                     NULL, NULL, NULL, err, sizeof(err)),
                     0);
    PGresult *r = testdb_exec(conn, "SELECT modseq FROM messages WHERE uid = 4");
    modseq_keyword = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    blob_store_close(&bs);
    return 0;
}

static int reset_scope(void **state)
{
    (void)state;
    scope = (struct mailsearch_scope){
        .folder_id = inbox, .uids = all_uids, .nuids = 5, .bs = bs, .now = utc(2026, 1, 11, 0, 0)};
    return 0;
}

/* ---- running commands ---- */

/* Parses "SEARCH ..." / "UID SORT ..." etc. with the real readers. */
static struct imap_search_program *program(enum imap_search_command cmd, const char *line)
{
    struct imap_parser *p = imap_parser_new(NULL);
    assert_non_null(p);
    char buf[4096];
    snprintf(buf, sizeof(buf), "t %s\r\n", line);
    const char *d = buf;
    size_t len = strlen(buf), used;
    enum imap_parse_event ev;
    while ((ev = imap_parser_feed(p, d, len, &used)) == IMAP_PARSE_CONTINUE) {
        d += used;
        len -= used;
    }
    assert_int_equal(ev, IMAP_PARSE_COMMAND);
    const struct imap_command *c = imap_parser_command(p);
    size_t skip = strcmp(c->name, "UID") == 0;
    uint32_t max_uid = scope.uids && scope.nuids ? scope.uids[scope.nuids - 1] : 0;
    struct imap_search_context ctx = {.messages = (uint32_t)scope.nuids, .max_uid = max_uid};
    struct imap_search_program *prog = NULL;
    char err[256];
    if (imap_search_parse(cmd, c->args + skip, c->count - skip, &ctx, &prog, err, sizeof(err)))
        fail_msg("parse %s: %s", line, err);
    imap_parser_free(&p);
    return prog;
}

static void join(const uint32_t *v, size_t n, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%u", i ? " " : "", (unsigned)v[i]);
    }
}

/* Runs a SEARCH; the UIDs as "1 2 3". */
static void expect_search(const char *line, const char *want)
{
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SEARCH, line);
    struct mailsearch_result res;
    char err[256], got[8192];
    if (mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)) != 0)
        fail_msg("%s: %s", line, err);
    join(res.uids, res.count, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", line, got, want);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

static void expect_sort(const char *line, const char *want)
{
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SORT, line);
    struct mailsearch_result res;
    char err[256], got[8192];
    if (mailsearch_sort(conn, &scope, prog, &res, err, sizeof(err)) != 0)
        fail_msg("%s: %s", line, err);
    join(res.uids, res.count, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", line, got, want);
    assert_int_equal(res.matches, res.count);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

static uint32_t seq_of(uint32_t uid, void *ctx)
{
    (void)ctx;
    return imap_search_uid_to_seq(scope.uids, scope.nuids, uid);
}

static void expect_thread(const char *line, const char *want)
{
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_THREAD, line);
    struct imap_thread *t = NULL;
    char err[256];
    if (mailsearch_thread(conn, &scope, prog, &t, err, sizeof(err)) != 0)
        fail_msg("%s: %s", line, err);
    struct imap_envelope_out out = {0};
    imap_thread_format(t, seq_of, NULL, &out);
    const char *got = out.data ? out.data : "";
    if (strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", line, got, want);
    imap_envelope_out_free(&out);
    imap_thread_free(&t);
    imap_search_program_free(&prog);
}

/* ---- tests ---- */

static void test_flags_keywords_recent(void **state)
{
    (void)state;
    expect_search("SEARCH ALL", "1 2 3 4 5");
    expect_search("SEARCH SEEN", "1 5");
    expect_search("SEARCH UNSEEN", "2 3 4");
    expect_search("SEARCH ANSWERED", "2");
    expect_search("SEARCH UNANSWERED", "1 3 4 5");
    expect_search("SEARCH FLAGGED", "2");
    expect_search("SEARCH UNFLAGGED", "1 3 4 5");
    expect_search("SEARCH DELETED", "3");
    expect_search("SEARCH UNDELETED", "1 2 4 5");
    expect_search("SEARCH DRAFT", "3");
    expect_search("SEARCH UNDRAFT", "1 2 4 5");
    expect_search("SEARCH KEYWORD $work", "4");
    expect_search("SEARCH KEYWORD $WORK UNSEEN", "4");
    expect_search("SEARCH UNKEYWORD $Work", "1 2 3 5");
    expect_search("SEARCH KEYWORD nope", "");
    expect_search("SEARCH KEYWORD \\Seen", "1 5");
    expect_search("SEARCH OR SEEN DELETED", "1 3 5");
    expect_search("SEARCH NOT (SEEN) NOT (OR FLAGGED DELETED)", "4");
    /* \Recent belongs to the session: none without a set */
    expect_search("SEARCH RECENT", "");
    expect_search("SEARCH OLD", "1 2 3 4 5");
    struct imap_seqset *recent;
    assert_int_equal(imap_seqset_parse("4:5", 3, 0, 0, &recent, NULL, 0), 0);
    scope.recent = recent;
    expect_search("SEARCH RECENT", "4 5");
    expect_search("SEARCH NEW", "4");
    expect_search("SEARCH OLD", "1 2 3");
    imap_seqset_free(&recent);
}

static void test_dates_sizes_modseq(void **state)
{
    (void)state;
    /* internal dates: 1 Feb, 2 Feb, 4 Feb 09:00, 5 Feb 1994, 10 Jan 2026 (UTC) */
    expect_search("SEARCH BEFORE 4-Feb-1994", "1 2");
    expect_search("SEARCH ON 4-Feb-1994", "3");
    expect_search("SEARCH SINCE 4-Feb-1994", "3 4 5");
    expect_search("SEARCH SINCE 2-Feb-1994 BEFORE 5-Feb-1994", "2 3");
    /* ten hours west of UTC, 4 Feb 09:00 UTC is still 3 Feb */
    scope.tz_offset = -36000;
    expect_search("SEARCH ON 3-Feb-1994", "3");
    expect_search("SEARCH ON 4-Feb-1994", "4"); /* 5 Feb 08:00 UTC */
    scope.tz_offset = 0;
    /* sent dates (UTC): 1 Feb 10:00, 2 Feb 09:00, none (internal: 4 Feb 09:00), 4 Feb 07:30
     * (3 Feb 23:30 -0800), 10 Jan 2026 */
    expect_search("SEARCH SENTBEFORE 2-Feb-1994", "1");
    expect_search("SEARCH SENTON 4-Feb-1994", "3 4");
    expect_search("SEARCH SENTON 3-Feb-1994", "");
    expect_search("SEARCH SENTSINCE 4-Feb-1994", "3 4 5");
    /* save dates: when the rows were written, i.e. now */
    expect_search("SEARCH SAVEDSINCE 1-Jan-2020", "1 2 3 4 5");
    expect_search("SEARCH SAVEDBEFORE 1-Jan-2020", "");
    expect_search("SEARCH SAVEDBEFORE 1-Jan-2200 SAVEDATESUPPORTED", "1 2 3 4 5");
    /* sizes */
    expect_search("SEARCH LARGER 1000", "3");
    expect_search("SEARCH SMALLER 1000", "1 2 4 5");
    char line[64];
    snprintf(line, sizeof(line), "SEARCH LARGER %zu SMALLER %zu", sizes[2] - 1, sizes[2] + 1);
    expect_search(line, "2");
    expect_search("SEARCH LARGER 9223372036854775807", "");
    /* OLDER / YOUNGER against scope.now = 11 Jan 2026 00:00 UTC; message 5 arrived 15 h
     * before */
    expect_search("SEARCH YOUNGER 172800", "5");
    expect_search("SEARCH OLDER 172800", "1 2 3 4");
    expect_search("SEARCH YOUNGER 54000", "5");
    expect_search("SEARCH YOUNGER 53999", "");
    expect_search("SEARCH OLDER 9223372036854775807", "");

    /* MODSEQ and the highest modseq of the matches (RFC 7162 §3.1.5) */
    snprintf(line, sizeof(line), "SEARCH MODSEQ %lld", modseq_keyword);
    expect_search(line, "4");
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SEARCH, "SEARCH MODSEQ 1 UNSEEN");
    struct mailsearch_result res;
    char err[256];
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.count, 3);
    assert_int_equal(res.highest_modseq, modseq_keyword);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

static void test_strings_and_text(void **state)
{
    (void)state;
    expect_search("SEARCH FROM alice", "1");
    expect_search("SEARCH FROM \"ALICE EXAMPLE\"", "1");
    expect_search("SEARCH FROM example.test", "1 2 3 4 5");
    expect_search("SEARCH FROM \"zo\xc3\xab\"", "3"); /* decoded from the encoded-word */
    expect_search("SEARCH TO \"doe, john\"", "3");
    expect_search("SEARCH TO bob", "1 4");
    expect_search("SEARCH CC carol", "1");
    expect_search("SEARCH CC \"\"", "1 2 3 4 5");
    expect_search("SEARCH SUBJECT report", "1 2");
    expect_search("SEARCH SUBJECT \"gr\xc3\xbc\xc3\x9f\"", "3");
    expect_search("SEARCH SUBJECT \"100%\"", "");
    expect_search("SEARCH SUBJECT \"_\"", "");
    expect_search("SEARCH NOT SUBJECT lunch", "1 2 3");
    /* user text is only ever a parameter */
    expect_search("SEARCH SUBJECT \"'; DROP TABLE messages; --\"", "");
    expect_search("SEARCH OR BODY \"x') OR TRUE OR ('\" HEADER X-Spam \"' OR 1=1 --\"", "");
    expect_search("SEARCH ALL", "1 2 3 4 5");

    /* full text: words in order, the last a prefix; BODY is the body only */
    expect_search("SEARCH BODY \"quick brown\"", "1");
    expect_search("SEARCH BODY \"QUICK BRO\"", "1");
    expect_search("SEARCH BODY \"brown quick\"", "");
    expect_search("SEARCH BODY \"lazy cat\"", "");
    expect_search("SEARCH BODY quarterly", "");
    expect_search("SEARCH TEXT quarterly", "1 2");
    expect_search("SEARCH TEXT \"gr\xc3\xbc\xc3\x9f"
                  "e aus\"",
                  "3");
    expect_search("SEARCH BODY friday", "4");
    expect_search("SEARCH NOT BODY fox", "2 3 4 5");
    expect_search("SEARCH BODY \"!!!\"", "1 2 3 4 5");
    expect_search("SEARCH BODY \"\"", "1 2 3 4 5");
    expect_search("SEARCH TEXT \"\xe2\x80\x94\"", "1 2 3 4 5"); /* an em dash: no word */
}

static void test_headers(void **state)
{
    (void)state;
    /* fields with a column */
    expect_search("SEARCH HEADER Subject lunch", "4 5");
    expect_search("SEARCH HEADER message-id m3@", "3");
    expect_search("SEARCH HEADER References \"<m1@example.test>\"", "2");
    expect_search("SEARCH HEADER In-Reply-To m1", "2");
    expect_search("SEARCH HEADER FROM bob", "2");
    /* fields read from the raw header, unfolded and decoded */
    expect_search("SEARCH HEADER X-Spam yes", "2");
    expect_search("SEARCH HEADER x-spam \"\"", "1 2");
    expect_search("SEARCH HEADER X-Long \"part folded second\"", "2");
    expect_search("SEARCH HEADER Date \"\"", "1 2 4 5");
    expect_search("SEARCH HEADER Subject \"\"", "1 2 3 4 5");
    expect_search("SEARCH HEADER Subject \"\" HEADER From \"zo\xc3\xab\"", "3");
    expect_search("SEARCH HEADER X-Nothing \"\"", "");
    expect_search("SEARCH BCC secret", "2");
    expect_search("SEARCH BCC \"\"", "2");
    /* raw keys under NOT and OR, with other keys */
    expect_search("SEARCH NOT HEADER X-Spam yes", "1 3 4 5");
    expect_search("SEARCH NOT NOT HEADER X-Spam yes", "2");
    expect_search("SEARCH OR HEADER X-Spam no SEEN", "1 5");
    expect_search("SEARCH OR NOT HEADER X-Spam \"\" FLAGGED", "2 3 4 5");
    expect_search("SEARCH HEADER X-Spam \"\" NOT SEEN", "2");
    expect_search("SEARCH 2:* HEADER X-Spam \"\"", "2");
    expect_search("SEARCH HEADER X-Spam \"\" BODY report", "2");

    /* without a blob store these cannot run */
    scope.bs = NULL;
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SEARCH, "SEARCH BCC x");
    struct mailsearch_result res;
    char err[256];
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)),
                     MAILSEARCH_EINVAL);
    assert_non_null(strstr(err, "blob"));
    assert_null(res.uids);
    imap_search_program_free(&prog);
}

static void test_sets_view_saved(void **state)
{
    (void)state;
    expect_search("SEARCH 2:3", "2 3");
    expect_search("SEARCH 4:*", "4 5");
    expect_search("SEARCH *", "5");
    expect_search("SEARCH 1,3,5", "1 3 5");
    expect_search("SEARCH NOT 2:4", "1 5");
    expect_search("SEARCH 9:12", "");
    expect_search("SEARCH UID 2:4", "2 3 4");
    expect_search("SEARCH UID 4:*", "4 5");
    expect_search("SEARCH UID 1,5:7", "1 5");
    expect_search("SEARCH OR UID 1 2:3", "1 2 3");

    /* a view with sequence numbers other than the UIDs, and messages the session does not
     * know (1, 4, 5): they are never reported */
    static const uint32_t view[] = {2, 3};
    scope.uids = view;
    scope.nuids = 2;
    expect_search("SEARCH ALL", "2 3");
    expect_search("SEARCH 1", "2");
    expect_search("SEARCH 2:*", "3");
    expect_search("UID SEARCH UID 1:*", "2 3"); /* "*" is 3 here */
    expect_search("UID SEARCH UID 4:*", "3");   /* 3:4 */
    /* a view still holding a message another session expunged (6) */
    static const uint32_t view6[] = {1, 2, 3, 4, 5, 6};
    scope.uids = view6;
    scope.nuids = 6;
    expect_search("SEARCH 5:*", "5");
    expect_search("SEARCH 6", "");
    expect_search("SEARCH ALL", "1 2 3 4 5");
    scope.uids = view;
    scope.nuids = 2;
    /* an empty view: nothing */
    scope.nuids = 0;
    expect_search("SEARCH ALL", "");
    expect_sort("SORT (DATE) UTF-8 ALL", "");
    expect_thread("THREAD REFERENCES UTF-8 ALL", "");
    /* no view: the whole folder, but sequence numbers cannot be used */
    scope.uids = NULL;
    expect_search("UID SEARCH ALL", "1 2 3 4 5");
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SEARCH, "SEARCH 1:2");
    struct mailsearch_result res;
    char err[256];
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)),
                     MAILSEARCH_EINVAL);
    imap_search_program_free(&prog);
    scope.uids = all_uids;
    scope.nuids = 5;

    /* "$" (RFC 5182) */
    expect_search("SEARCH $", "");
    struct imap_seqset *saved;
    assert_int_equal(imap_seqset_parse("2,4", 3, 0, 0, &saved, NULL, 0), 0);
    scope.saved = saved;
    expect_search("SEARCH $", "2 4");
    expect_search("UID SEARCH UID $ UNSEEN", "2 4");
    expect_search("SEARCH NOT $", "1 3 5");
    expect_search("SEARCH OR $ SEEN", "1 2 4 5");
    imap_seqset_free(&saved);
}

static void expect_return(const char *line, const char *want, uint64_t matches, long long modseq)
{
    struct imap_search_program *prog = program(IMAP_SEARCH_CMD_SEARCH, line);
    struct mailsearch_result res;
    char err[256], got[256];
    if (mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)) != 0)
        fail_msg("%s: %s", line, err);
    join(res.uids, res.count, got, sizeof(got));
    if (strcmp(got, want) != 0 || res.matches != matches ||
        (modseq >= 0 && res.highest_modseq != modseq))
        fail_msg("%s: got \"%s\" %llu %lld, want \"%s\" %llu %lld", line, got,
                 (unsigned long long)res.matches, res.highest_modseq, want,
                 (unsigned long long)matches, modseq);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

static long long modseq_of(uint32_t uid)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT modseq FROM messages WHERE folder_id = %lld AND uid = %u",
             inbox, (unsigned)uid);
    PGresult *r = testdb_exec(conn, sql);
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void test_return_options(void **state)
{
    (void)state;
    long long ms2 = modseq_of(2), ms3 = modseq_of(3);
    /* MIN / MAX / COUNT alone run their own statements; with a raw key they are worked out
     * from the full result: the answers must agree (RFC 4731 §3.1, §3.2) */
    for (int raw = 0; raw < 2; raw++) {
        const char *extra = raw ? " HEADER Subject \"\"" : "";
        char line[160];
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN) MODSEQ 1 UNSEEN%s", extra);
        expect_return(line, "2", 1, ms2);
        snprintf(line, sizeof(line), "SEARCH RETURN (MAX) MODSEQ 1 UNSEEN%s", extra);
        expect_return(line, "4", 1, modseq_keyword);
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN MAX) MODSEQ 1 UNSEEN%s", extra);
        expect_return(line, "2 4", 2, modseq_keyword);
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN MAX SAVE) UNSEEN%s", extra);
        expect_return(line, "2 4", 2, -1);
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN MAX) DELETED%s", extra);
        expect_return(line, "3", 1, ms3);
        snprintf(line, sizeof(line), "SEARCH RETURN (COUNT) MODSEQ 1 UNSEEN%s", extra);
        expect_return(line, "", 3, modseq_keyword);
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN COUNT) UNSEEN%s", extra);
        expect_return(line, "2 3 4", 3, modseq_keyword);
        snprintf(line, sizeof(line), "SEARCH RETURN (MIN) KEYWORD nothing%s", extra);
        expect_return(line, "", 0, 0);
        snprintf(line, sizeof(line), "SEARCH RETURN (COUNT) KEYWORD nothing%s", extra);
        expect_return(line, "", 0, 0);
        snprintf(line, sizeof(line), "SEARCH RETURN () UNSEEN%s", extra);
        expect_return(line, "2 3 4", 3, modseq_keyword);
    }
}

static void test_sort(void **state)
{
    (void)state;
    /* base subjects: Quarterly report (1, 2), Grüße aus Berlin (3), Lunch? (4, 5) */
    expect_sort("SORT (SUBJECT) UTF-8 ALL", "3 4 5 1 2");
    expect_sort("SORT (REVERSE SUBJECT) UTF-8 ALL", "1 2 4 5 3"); /* ties stay in UID order */
    expect_sort("SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "3 5 4 2 1");
    /* sent dates: 1, 2, 4 (4 Feb 07:30), 3 (4 Feb 09:00), 5; arrival: 1 2 3 4 5 */
    expect_sort("SORT (DATE) UTF-8 ALL", "1 2 4 3 5");
    expect_sort("SORT (REVERSE DATE) UTF-8 ALL", "5 3 4 2 1");
    expect_sort("SORT (ARRIVAL) UTF-8 ALL", "1 2 3 4 5");
    expect_sort("SORT (REVERSE ARRIVAL) US-ASCII UNSEEN", "4 3 2");
    expect_sort("SORT (DATE) UTF-8 UNSEEN", "2 4 3");
    /* sizes: computed from what was delivered */
    uint32_t by_size[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (sizes[by_size[j]] < sizes[by_size[i]] ||
                (sizes[by_size[j]] == sizes[by_size[i]] && by_size[j] < by_size[i])) {
                uint32_t t = by_size[i];
                by_size[i] = by_size[j];
                by_size[j] = t;
            }
    char want[64];
    join(by_size, 5, want, sizeof(want));
    expect_sort("SORT (SIZE) UTF-8 ALL", want);
    /* addresses: addr-mailbox of the first one (RFC 5256) */
    expect_sort("SORT (FROM) UTF-8 ALL", "1 2 4 5 3"); /* alice bob carol dave zoe */
    expect_sort("SORT (TO) UTF-8 ALL", "2 4 5 1 3");   /* alice alice angel bob john */
    expect_sort("SORT (CC) UTF-8 ALL", "2 3 4 5 1");   /* empty first */
    expect_sort("SORT (REVERSE CC) UTF-8 ALL", "1 2 3 4 5");
    /* display names (RFC 5957): Aaron Dave, Alice Example, Bob, carol@example.test, Zoë */
    expect_sort("SORT (DISPLAYFROM) UTF-8 ALL", "5 1 2 4 3");
    /* alice@example.test (2, 4), Bob, "Doe, John", Ángel (UTF-8 after ASCII) */
    expect_sort("SORT (DISPLAYTO) UTF-8 ALL", "2 4 1 3 5");
    /* with search keys, raw ones included */
    expect_sort("SORT (SUBJECT) UTF-8 NOT 3", "4 5 1 2");
    expect_sort("SORT (REVERSE ARRIVAL) UTF-8 HEADER X-Spam \"\"", "2 1");
    expect_sort("SORT (FROM) UTF-8 HEADER X-Spam \"\"", "1 2");

    struct imap_search_program *prog =
        program(IMAP_SEARCH_CMD_SORT, "SORT (SUBJECT) UTF-8 MODSEQ 1");
    struct mailsearch_result res;
    char err[256];
    assert_int_equal(mailsearch_sort(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.count, 5);
    assert_int_equal(res.highest_modseq, modseq_keyword);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
    prog = program(IMAP_SEARCH_CMD_SORT, "SORT (DATE) UTF-8 MODSEQ 1");
    assert_int_equal(mailsearch_sort(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.highest_modseq, modseq_keyword);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

static void test_thread(void **state)
{
    (void)state;
    /* 2 replies to 1 (References); 5 is a forward of 4's subject; 3 stands alone */
    expect_thread("THREAD REFERENCES UTF-8 ALL", "(1 2)(4 5)(3)");
    expect_thread("THREAD ORDEREDSUBJECT UTF-8 ALL", "(1 2)(4 5)(3)");
    /* 1 not searched: 2's missing parent is pruned */
    expect_thread("THREAD REFERENCES UTF-8 NOT 1", "(2)(4 5)(3)");
    expect_thread("THREAD REFERENCES UTF-8 SUBJECT nothing", "");
    /* sequence numbers through a view */
    static const uint32_t view[] = {1, 2, 4, 5};
    scope.uids = view;
    scope.nuids = 4;
    expect_thread("THREAD REFERENCES UTF-8 ALL", "(1 2)(3 4)");
    expect_thread("THREAD ORDEREDSUBJECT UTF-8 HEADER X-Spam \"\"", "(1 2)");
}

static void test_pages(void **state)
{
    (void)state;
    /* 2500 copies of message 2 (with its blob) and 2500 of message 1 in another folder: a
     * raw-header search reads more than two pages */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO messages (account_id, folder_id, uid, modseq, blob_id, size, flags,"
             " envelope, body, bodystructure, subject, from_addr, fts)"
             " SELECT account_id, %lld, 10 + 2 * g + (uid = 1)::int, modseq, blob_id, size, flags,"
             " envelope, body, bodystructure, subject, from_addr, fts"
             " FROM messages, generate_series(1, 2500) g WHERE folder_id = %lld AND uid IN (1, 2)",
             bulk, inbox);
    PQclear(testdb_exec(conn, sql));
    scope = (struct mailsearch_scope){.folder_id = bulk, .bs = bs};
    struct imap_search_program *prog =
        program(IMAP_SEARCH_CMD_SEARCH, "UID SEARCH HEADER X-Spam yes");
    struct mailsearch_result res;
    char err[256];
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.count, 2500);
    assert_int_equal(res.uids[0], 12);
    assert_int_equal(res.uids[2499], 5010);
    for (size_t i = 1; i < res.count; i++)
        assert_int_equal(res.uids[i], res.uids[i - 1] + 2);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
    prog = program(IMAP_SEARCH_CMD_SEARCH, "UID SEARCH RETURN (COUNT) NOT HEADER X-Spam yes");
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.matches, 2500);
    assert_int_equal(res.count, 0);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
    /* the plain statement streams all 5000 rows */
    prog = program(IMAP_SEARCH_CMD_SEARCH, "UID SEARCH ALL");
    assert_int_equal(mailsearch_search(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.count, 5000);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
    prog = program(IMAP_SEARCH_CMD_SORT, "UID SORT (REVERSE SUBJECT) UTF-8 HEADER X-Spam \"\"");
    assert_int_equal(mailsearch_sort(conn, &scope, prog, &res, err, sizeof(err)), 0);
    assert_int_equal(res.count, 5000);
    assert_int_equal(res.uids[0], 12); /* "Re: Quarterly report" and "Quarterly report" tie */
    assert_int_equal(res.uids[4999], 5011);
    mailsearch_result_free(&res);
    imap_search_program_free(&prog);
}

int main(void)
{
    conn = testdb_create("mailsearch");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_flags_keywords_recent, reset_scope),
        cmocka_unit_test_setup(test_dates_sizes_modseq, reset_scope),
        cmocka_unit_test_setup(test_strings_and_text, reset_scope),
        cmocka_unit_test_setup(test_headers, reset_scope),
        cmocka_unit_test_setup(test_sets_view_saved, reset_scope),
        cmocka_unit_test_setup(test_return_options, reset_scope),
        cmocka_unit_test_setup(test_sort, reset_scope),
        cmocka_unit_test_setup(test_thread, reset_scope),
        cmocka_unit_test_setup(test_pages, reset_scope),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    testdb_drop(&conn);
    return rc;
}
