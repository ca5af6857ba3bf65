/* layer: storage */
/* Tests for storage/sigv4 against the examples AWS publishes:
 *  - the Signature Version 4 test suite (credentials AKIDEXAMPLE, service
 *    "service", 2015-08-30T12:36:00Z): get-vanilla,
 *    get-vanilla-query-order-key-case, post-vanilla, and the IAM reference's
 *    signing-key derivation example;
 *  - the S3 API reference, "Signature Calculations for the Authorization
 *    Header: Transferring Payload in a Single Chunk" (credentials
 *    AKIAIOSFODNN7EXAMPLE, 2013-05-24): GET Object with a Range, PUT Object,
 *    GET Bucket lifecycle and GET Bucket (List Objects), checking the hash of
 *    the canonical request as well as the signature.
 * Pure: no network, no database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "storage/sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct sigv4_credentials suite_cred = {
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service"};
static const struct sigv4_credentials s3_cred = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"};

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Signs req and checks the signature, and the canonical request's hash when
 * creq_hash is not NULL. Returns nothing; fails the test on a mismatch. */
static void check(const struct sigv4_request *req, const struct sigv4_credentials *cred,
                  const char *date, const char *creq_hash, const char *signature)
{
    char creq[8192], hash[SIGV4_HEX_LEN + 1];
    int n = sigv4_canonical_request(req, creq, sizeof creq, NULL, 0);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(creq));
    if (creq_hash != NULL) {
        sigv4_sha256_hex(creq, strlen(creq), hash);
        if (strcmp(hash, creq_hash) != 0)
            fail_msg("canonical request hashes to %s, want %s:\n%s", hash, creq_hash, creq);
    }
    char auth[1024], sig[SIGV4_HEX_LEN + 1], err[256] = "";
    assert_int_equal(sigv4_authorization(req, cred, date, auth, sizeof auth, sig, err, sizeof err),
                     0);
    assert_string_equal(sig, signature);
    char tail[128];
    snprintf(tail, sizeof tail, "Signature=%s", signature);
    assert_contains(auth, tail);
}

/* ---- the Signature Version 4 test suite ---- */

static void test_suite_get_vanilla(void **state)
{
    const struct sigv4_param h[] = {{"Host", "example.amazonaws.com"},
                                    {"X-Amz-Date", "20150830T123600Z"}};
    const struct sigv4_request req = {"GET", "/", NULL, 0, h, 2, EMPTY_SHA256};

    /* Every intermediate form the suite publishes. */
    char creq[1024], signed_list[128];
    assert_true(sigv4_canonical_request(&req, creq, sizeof creq, signed_list, sizeof signed_list) >
                0);
    assert_string_equal(creq,
                        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "host;x-amz-date\n" EMPTY_SHA256);
    assert_string_equal(signed_list, "host;x-amz-date");
    char sts[512];
    assert_true(sigv4_string_to_sign(creq, "20150830T123600Z", "us-east-1", "service", sts,
                                     sizeof sts) > 0);
    assert_string_equal(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n"
                             "20150830/us-east-1/service/aws4_request\n"
                             "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");

    char auth[512], err[256] = "";
    assert_int_equal(sigv4_authorization(&req, &suite_cred, "20150830T123600Z", auth, sizeof auth,
                                         NULL, err, sizeof err),
                     0);
    assert_string_equal(auth,
                        "AWS4-HMAC-SHA256 "
                        "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                        "SignedHeaders=host;x-amz-date, "
                        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763"
                        "fbf31");
}

static void test_suite_query_order(void **state)
{
    /* get-vanilla-query-order-key-case: ?Param2=value2&Param1=value1 */
    const struct sigv4_param q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    const struct sigv4_param h[] = {{"host", "example.amazonaws.com"},
                                    {"x-amz-date", "20150830T123600Z"}};
    const struct sigv4_request req = {"GET", "/", q, 2, h, 2, EMPTY_SHA256};
    check(&req, &suite_cred, "20150830T123600Z", NULL,
          "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_suite_post_vanilla(void **state)
{
    const struct sigv4_param h[] = {{"host", "example.amazonaws.com"},
                                    {"x-amz-date", "20150830T123600Z"}};
    const struct sigv4_request req = {"POST", "/", NULL, 0, h, 2, EMPTY_SHA256};
    check(&req, &suite_cred, "20150830T123600Z", NULL,
          "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void test_signing_key(void **state)
{
    /* The IAM reference's "derive a signing key" example. */
    unsigned char key[32];
    char hex[65];
    assert_int_equal(sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830",
                                       "us-east-1", "iam", key),
                     0);
    sigv4_hex(key, sizeof key, hex);
    assert_string_equal(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");

    assert_int_equal(sigv4_signing_key("x", "2015083", "us-east-1", "iam", key), -1);
    assert_int_equal(sigv4_signing_key("x", "20150830", "us east", "iam", key), -1);
    assert_int_equal(sigv4_signing_key("", "20150830", "us-east-1", "iam", key), -1);
}

/* ---- the S3 API reference's examples ---- */

static void test_s3_get_object_range(void **state)
{
    const struct sigv4_param h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                    {"Range", "bytes=0-9"},
                                    {"x-amz-content-sha256", EMPTY_SHA256},
                                    {"x-amz-date", "20130524T000000Z"}};
    const struct sigv4_request req = {"GET", "/test.txt", NULL, 0, h, 4, EMPTY_SHA256};
    char creq[1024];
    assert_true(sigv4_canonical_request(&req, creq, sizeof creq, NULL, 0) > 0);
    assert_string_equal(creq, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
                              "range:bytes=0-9\nx-amz-content-sha256:" EMPTY_SHA256 "\n"
                              "x-amz-date:20130524T000000Z\n\n"
                              "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
    check(&req, &s3_cred, "20130524T000000Z",
          "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
          "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    char auth[512], err[256];
    assert_int_equal(sigv4_authorization(&req, &s3_cred, "20130524T000000Z", auth, sizeof auth,
                                         NULL, err, sizeof err),
                     0);
    assert_contains(auth, "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                          "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, ");
}

static void test_s3_put_object(void **state)
{
    const char body[] = "Welcome to Amazon S3.";
    char payload[SIGV4_HEX_LEN + 1];
    sigv4_sha256_hex(body, strlen(body), payload);
    assert_string_equal(payload,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");

    /* The key "test$file.text": '$' is encoded in the path. */
    char path[64];
    const char key[] = "/test$file.text";
    assert_int_equal(sigv4_uri_encode(key, strlen(key), false, path, sizeof path), 17);
    assert_string_equal(path, "/test%24file.text");

    const struct sigv4_param h[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                    {"Host", "examplebucket.s3.amazonaws.com"},
                                    {"x-amz-date", "20130524T000000Z"},
                                    {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                    {"x-amz-content-sha256", payload}};
    const struct sigv4_request req = {"PUT", path, NULL, 0, h, 5, payload};
    check(&req, &s3_cred, "20130524T000000Z",
          "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
          "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_s3_get_lifecycle(void **state)
{
    /* "?lifecycle": a parameter without a value signs as "lifecycle=". */
    const struct sigv4_param q[] = {{"lifecycle", ""}};
    char cq[64];
    assert_int_equal(sigv4_canonical_query(q, 1, cq, sizeof cq), 10);
    assert_string_equal(cq, "lifecycle=");
    const struct sigv4_param h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                                    {"x-amz-content-sha256", EMPTY_SHA256},
                                    {"x-amz-date", "20130524T000000Z"}};
    const struct sigv4_request req = {"GET", "/", q, 1, h, 3, EMPTY_SHA256};
    check(&req, &s3_cred, "20130524T000000Z",
          "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
          "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_s3_list_objects(void **state)
{
    /* Given out of order: the canonical query sorts. */
    const struct sigv4_param q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    const struct sigv4_param h[] = {{"x-amz-date", "20130524T000000Z"},
                                    {"x-amz-content-sha256", EMPTY_SHA256},
                                    {"host", "examplebucket.s3.amazonaws.com"}};
    const struct sigv4_request req = {"GET", "/", q, 2, h, 3, EMPTY_SHA256};
    check(&req, &s3_cred, "20130524T000000Z",
          "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
          "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

/* ---- the building blocks ---- */

static void test_uri_encode(void **state)
{
    char out[64];
    assert_int_equal(sigv4_uri_encode("a b/c+d~e", 9, false, out, sizeof out), 13);
    assert_string_equal(out, "a%20b/c%2Bd~e");
    assert_int_equal(sigv4_uri_encode("a/b", 3, true, out, sizeof out), 5);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(sigv4_uri_encode("\xc3\xbc", 2, false, out, sizeof out), 6);
    assert_string_equal(out, "%C3%BC");
    assert_int_equal(sigv4_uri_encode("AZaz09-._~", 10, true, out, sizeof out), 10);
    assert_string_equal(out, "AZaz09-._~");
    /* Too small: an error, not a truncated string. */
    assert_int_equal(sigv4_uri_encode("abc", 3, false, out, 3), -1);
    assert_int_equal(sigv4_uri_encode(" ", 1, false, out, 3), -1);
    assert_int_equal(sigv4_uri_encode(" ", 1, false, out, 4), 3);
}

static void test_canonical_query(void **state)
{
    /* Values are encoded with '/' too; sorted by name then value. */
    const struct sigv4_param q[] = {
        {"prefix", "log/a b"}, {"list-type", "2"}, {"uploads", ""}, {"a", "2"}, {"a", "1"}};
    char out[256];
    int n = sigv4_canonical_query(q, 5, out, sizeof out);
    assert_string_equal(out, "a=1&a=2&list-type=2&prefix=log%2Fa%20b&uploads=");
    assert_int_equal(n, (int)strlen(out));
    assert_int_equal(sigv4_canonical_query(q, 5, out, 10), -1);
    assert_int_equal(sigv4_canonical_query(NULL, 0, out, sizeof out), 0);
    assert_string_equal(out, "");

    struct sigv4_param many[SIGV4_MAX_PARAMS + 1];
    for (size_t i = 0; i < SIGV4_MAX_PARAMS + 1; i++)
        many[i] = (struct sigv4_param){"k", "v"};
    assert_int_equal(sigv4_canonical_query(many, SIGV4_MAX_PARAMS + 1, out, sizeof out), -1);
    const struct sigv4_param noname[] = {{"", "v"}};
    assert_int_equal(sigv4_canonical_query(noname, 1, out, sizeof out), -1);
}

static void test_canonical_headers(void **state)
{
    /* Values trimmed, inner blanks collapsed; repeated names joined in the
     * order given (as the suite's get-header-value-order). */
    const struct sigv4_param h[] = {{"My-Header1", "value4"},  {"host", "example.amazonaws.com"},
                                    {"my-header1", "value1"},  {"My-Header2", "  \"a   b   c\"  "},
                                    {"my-header1", " value3"}, {"x-amz-date", "20150830T123600Z"},
                                    {"my-header1", "value2 "}};
    const struct sigv4_request req = {"GET", "/", NULL, 0, h, 7, EMPTY_SHA256};
    char creq[1024], signed_list[128];
    assert_true(sigv4_canonical_request(&req, creq, sizeof creq, signed_list, sizeof signed_list) >
                0);
    assert_string_equal(creq, "GET\n/\n\nhost:example.amazonaws.com\n"
                              "my-header1:value4,value1,value3,value2\n"
                              "my-header2:\"a b c\"\n"
                              "x-amz-date:20150830T123600Z\n\n"
                              "host;my-header1;my-header2;x-amz-date\n" EMPTY_SHA256);
    assert_string_equal(signed_list, "host;my-header1;my-header2;x-amz-date");

    /* A line break in a value would smuggle a header: refused. */
    const struct sigv4_param bad[] = {{"host", "a\r\nx-evil: 1"}};
    const struct sigv4_request badreq = {"GET", "/", NULL, 0, bad, 1, EMPTY_SHA256};
    assert_int_equal(sigv4_canonical_request(&badreq, creq, sizeof creq, NULL, 0), -1);
    const struct sigv4_param badname[] = {{"ho st", "a"}};
    const struct sigv4_request badreq2 = {"GET", "/", NULL, 0, badname, 1, EMPTY_SHA256};
    assert_int_equal(sigv4_canonical_request(&badreq2, creq, sizeof creq, NULL, 0), -1);
    /* The path must be absolute; buffers too small are errors. */
    const struct sigv4_request rel = {"GET", "x", NULL, 0, h, 2, EMPTY_SHA256};
    assert_int_equal(sigv4_canonical_request(&rel, creq, sizeof creq, NULL, 0), -1);
    assert_int_equal(sigv4_canonical_request(&req, creq, 40, NULL, 0), -1);
    assert_int_equal(sigv4_canonical_request(&req, creq, sizeof creq, signed_list, 5), -1);
}

static void test_authorization_errors(void **state)
{
    const struct sigv4_param h[] = {{"host", "h"}, {"x-amz-date", "20150830T123600Z"}};
    const struct sigv4_request req = {"GET", "/", NULL, 0, h, 2, EMPTY_SHA256};
    char auth[512], err[256];

    err[0] = '\0';
    assert_int_equal(sigv4_authorization(&req, &suite_cred, "2015-08-30", auth, sizeof auth, NULL,
                                         err, sizeof err),
                     -1);
    assert_contains(err, "date");

    struct sigv4_credentials c = suite_cred;
    c.access_key = "AKID EXAMPLE";
    err[0] = '\0';
    assert_int_equal(
        sigv4_authorization(&req, &c, "20150830T123600Z", auth, sizeof auth, NULL, err, sizeof err),
        -1);
    assert_contains(err, "access key");

    c = suite_cred;
    c.region = "us-east-1/x";
    assert_int_equal(
        sigv4_authorization(&req, &c, "20150830T123600Z", auth, sizeof auth, NULL, err, sizeof err),
        -1);

    err[0] = '\0';
    assert_int_equal(
        sigv4_authorization(&req, &suite_cred, "20150830T123600Z", auth, 20, NULL, err, sizeof err),
        -1);
    assert_contains(err, "too small");

    /* Another day, another signature: the date is part of the key. */
    char s1[65], s2[65];
    assert_int_equal(sigv4_authorization(&req, &suite_cred, "20150830T123600Z", auth, sizeof auth,
                                         s1, err, sizeof err),
                     0);
    assert_int_equal(sigv4_authorization(&req, &suite_cred, "20150831T123600Z", auth, sizeof auth,
                                         s2, err, sizeof err),
                     0);
    assert_string_not_equal(s1, s2);
}

static void test_amz_date(void **state)
{
    char d[SIGV4_DATE_SIZE];
    assert_int_equal(sigv4_amz_date(0, d), 0);
    assert_string_equal(d, "19700101T000000Z");
    assert_int_equal(sigv4_amz_date(1369353600, d), 0);
    assert_string_equal(d, "20130524T000000Z");
    assert_int_equal(sigv4_amz_date(1440938160, d), 0);
    assert_string_equal(d, "20150830T123600Z");
    assert_int_equal(sigv4_amz_date(1709251199, d), 0); /* a leap day */
    assert_string_equal(d, "20240229T235959Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_get_vanilla),
        cmocka_unit_test(test_suite_query_order),
        cmocka_unit_test(test_suite_post_vanilla),
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_s3_get_object_range),
        cmocka_unit_test(test_s3_put_object),
        cmocka_unit_test(test_s3_get_lifecycle),
        cmocka_unit_test(test_s3_list_objects),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_canonical_headers),
        cmocka_unit_test(test_authorization_errors),
        cmocka_unit_test(test_amz_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
