/* layer: storage */
/* Message ingest against a real PostgreSQL with the pg blob backend: the stored
 * blob is the message byte for byte, the section offsets slice it correctly, the
 * IMAP strings and decoded fields are filled, full-text search finds the body,
 * and dates parse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/blobgc.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/ingest.h"
#include "support/testdb.h"

static PGconn *conn;
static struct blob_store *bs;
static long long alice, inbox;

static const char msg[] =
    "Date: Sat, 21 Nov 2026 07:00:00 +0100\r\n"
    "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.test>\r\n"
    "To: alice@example.test\r\n"
    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus Berlin\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "The quick brown fox jumps.\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAECAwQ=\r\n"
    "--b1--\r\n";

static int setup(void **state)
{
    PQclear(testdb_exec(conn, "TRUNCATE domains, accounts RESTART IDENTITY CASCADE"));
    char err[256];
    dir_domain_add(conn, "example.test", err, sizeof(err));
    dir_account_add(conn, "alice@example.test", "user", "pw-123456", "", false, err, sizeof(err));
    struct dir_account a;
    assert_int_equal(dir_account_find(conn, "alice@example.test", &a, err, sizeof(err)), 0);
    alice = a.id;
    struct folder f;
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_INBOX, &f), 0);
    inbox = f.id;
    return 0;
}

static char *blob_bytes(const char *id, unsigned long long off, unsigned long long len)
{
    struct blob_reader *r;
    char err[256];
    if (blob_reader_open(bs, conn, id, off, len, &r, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    char *out = calloc(1, 65536);
    size_t used = 0;
    ssize_t n;
    while ((n = blob_reader_read(r, out + used, 65535 - used)) > 0)
        used += (size_t)n;
    assert_true(n == 0);
    blob_reader_close(&r);
    return out;
}

static void test_deliver(void **state)
{
    char err[256];
    uint32_t uid;
    long long modseq;
    assert_int_equal(mail_deliver(conn, bs, alice, inbox, msg, strlen(msg), 0, 0, true, &uid,
                                  &modseq, err, sizeof(err)),
                     0);
    assert_int_equal(uid, 1);
    PGresult *r = testdb_exec(conn, "SELECT blob_id, size, envelope, bodystructure, subject,"
                                    " from_addr, message_id, extract(epoch FROM sent_date)::bigint,"
                                    " parts::text FROM messages");
    assert_int_equal(PQntuples(r), 1);
    char *whole = blob_bytes(PQgetvalue(r, 0, 0), 0, UINT64_MAX);
    assert_string_equal(whole, msg); /* the blob is the message, byte for byte */
    free(whole);
    assert_int_equal(atoi(PQgetvalue(r, 0, 1)), (int)strlen(msg));
    assert_non_null(strstr(PQgetvalue(r, 0, 2), "<m1@example.test>"));
    assert_non_null(strstr(PQgetvalue(r, 0, 3), "\"mixed\""));
    assert_string_equal(PQgetvalue(r, 0, 4), "Gr\xc3\xbc\xc3\x9f" "e aus Berlin");
    assert_non_null(strstr(PQgetvalue(r, 0, 5), "J\xc3\xb6rg"));
    assert_string_equal(PQgetvalue(r, 0, 7), "1795240800"); /* 06:00 UTC */
    /* section 1's body, sliced from the blob at the stored offsets */
    const char *parts = PQgetvalue(r, 0, 8);
    /* jsonb prints objects with sorted keys: {"b": [o, n], "h": [...], "l": n, "s": "1"} */
    const char *s1 = strstr(parts, "\"s\": \"1\"");
    assert_non_null(s1);
    while (s1 > parts && *s1 != '{')
        s1--;
    unsigned long long off, len;
    assert_int_equal(sscanf(strstr(s1, "\"b\": [") + 6, "%llu, %llu", &off, &len), 2);
    char *body = blob_bytes(PQgetvalue(r, 0, 0), off, len);
    assert_string_equal(body, "The quick brown fox jumps.");
    free(body);
    assert_non_null(strstr(parts, "\"s\": \"2\""));
    PQclear(r);
    r = testdb_exec(conn, "SELECT count(*) FROM messages"
                          " WHERE fts @@ plainto_tsquery('simple', 'quick fox')");
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);

    /* the same content again: a second message, one blob */
    assert_int_equal(mail_deliver(conn, bs, alice, inbox, msg, strlen(msg), MAIL_SEEN, 0, true,
                                  &uid, &modseq, err, sizeof(err)),
                     0);
    assert_int_equal(uid, 2);
    r = testdb_exec(conn, "SELECT count(DISTINCT blob_id) FROM messages");
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
}

/* Section numbers of a single-part message and of a forwarded message. */
static void test_sections(void **state)
{
    static const char fwd[] =
        "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
        "--x\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        "--x\r\nContent-Type: message/rfc822\r\n\r\n"
        "Subject: inner\r\n\r\ninner body\r\n"
        "--x--\r\n";
    static const char single[] = "Subject: one\r\n\r\njust text\r\n";
    char err[256];
    uint32_t uid;
    long long ms;
    assert_int_equal(mail_deliver(conn, bs, alice, inbox, single, strlen(single), 0, 0, true, &uid,
                                  &ms, err, sizeof(err)),
                     0);
    assert_int_equal(mail_deliver(conn, bs, alice, inbox, fwd, strlen(fwd), 0, 0, true, &uid, &ms,
                                  err, sizeof(err)),
                     0);
    PGresult *r = testdb_exec(conn, "SELECT blob_id, parts FROM messages ORDER BY uid");
    assert_int_equal(PQntuples(r), 2);
    /* the single-part message's section 1 is its body */
    PGresult *s1 = testdb_exec(conn, "SELECT (p->'b'->>0)::bigint, (p->'b'->>1)::bigint"
                                     " FROM messages, jsonb_array_elements(parts) p"
                                     " WHERE uid = 1 AND p->>'s' = '1'");
    assert_int_equal(PQntuples(s1), 1);
    char *body = blob_bytes(PQgetvalue(r, 0, 0), strtoull(PQgetvalue(s1, 0, 0), NULL, 10),
                            strtoull(PQgetvalue(s1, 0, 1), NULL, 10));
    assert_string_equal(body, "just text\r\n");
    free(body);
    PQclear(s1);
    /* 2 is the message/rfc822 part: 2.TEXT is the inner body, 2.1 the inner part */
    s1 = testdb_exec(conn, "SELECT (p->'mb'->>0)::bigint, (p->'mb'->>1)::bigint"
                           " FROM messages, jsonb_array_elements(parts) p"
                           " WHERE uid = 2 AND p->>'s' = '2'");
    assert_int_equal(PQntuples(s1), 1);
    body = blob_bytes(PQgetvalue(r, 1, 0), strtoull(PQgetvalue(s1, 0, 0), NULL, 10),
                      strtoull(PQgetvalue(s1, 0, 1), NULL, 10));
    assert_string_equal(body, "inner body");
    free(body);
    PQclear(s1);
    s1 = testdb_exec(conn, "SELECT count(*) FROM messages, jsonb_array_elements(parts) p"
                           " WHERE uid = 2 AND p->>'s' IN ('1', '2', '2.1')");
    assert_string_equal(PQgetvalue(s1, 0, 0), "3");
    PQclear(s1);
    PQclear(r);
}

/* The collector removes what no message references once the grace period is over. */
static void test_blob_gc(void **state)
{
    PQclear(testdb_exec(conn, "TRUNCATE blobs, blob_chunks, blob_uploads"));
    char err[256];
    uint32_t uid;
    long long ms;
    assert_int_equal(mail_deliver(conn, bs, alice, inbox, msg, strlen(msg), 0, 0, true, &uid, &ms,
                                  err, sizeof(err)),
                     0);
    char orphan[BLOB_ID_LEN + 1];
    assert_int_equal(blob_put(bs, conn, "nobody refers to me", 19, orphan, err, sizeof(err)), 0);
    struct blobgc_result res;
    /* within the grace period nothing goes */
    assert_int_equal(blobgc_run(conn, bs, 3600, &res, err, sizeof(err)), 0);
    assert_int_equal(res.deleted, 0);
    assert_true(res.examined >= 2);
    /* make both blobs old */
    PQclear(testdb_exec(conn, "UPDATE blobs SET written_at = now() - interval '2 hours'"));
    assert_int_equal(blobgc_run(conn, bs, 3600, &res, err, sizeof(err)), 0);
    assert_int_equal(res.deleted, 1);
    unsigned long long size;
    assert_int_equal(blob_stat(bs, conn, orphan, &size, err, sizeof(err)), BLOB_ENOTFOUND);
    PGresult *r = testdb_exec(conn, "SELECT blob_id FROM messages");
    assert_int_equal(blob_stat(bs, conn, PQgetvalue(r, 0, 0), &size, err, sizeof(err)), 0);
    PQclear(r);
}

static void test_dates(void **state)
{
    assert_int_equal(mail_parse_date("Sat, 21 Nov 2026 07:00:00 +0100"), 1795240800);
    assert_int_equal(mail_parse_date("21 Nov 2026 06:00 +0000"), 1795240800);
    assert_int_equal(mail_parse_date("Sat, 21 Nov 26 01:00:00 EST"), 1795240800);
    assert_int_equal(mail_parse_date("Fri, 20 Nov 2026 22:00:00 -0800"), 1795240800);
    assert_int_equal(mail_parse_date("garbage"), 0);
    assert_int_equal(mail_parse_date("31 Foo 2026 10:00 +0000"), 0);
    assert_int_equal(mail_parse_date(NULL), 0);
}

int main(void)
{
    conn = testdb_create("ingest");
    struct blob_config bc = {.backend = "pg"};
    char err[256];
    bs = blob_store_open(&bc, err, sizeof(err));
    if (!bs) {
        fprintf(stderr, "blob store: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_deliver, setup),
        cmocka_unit_test_setup(test_sections, setup),
        cmocka_unit_test_setup(test_blob_gc, setup),
        cmocka_unit_test(test_dates),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    blob_store_close(&bs);
    testdb_drop(&conn);
    return rc;
}
