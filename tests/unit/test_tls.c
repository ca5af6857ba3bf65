/* layer: node */
/* Unit tests for node/tls: loading (separate files, combined key+cert+chain, chain file), every
 * load error and its message, warnings, settings, SNI selection (exact, wildcard, multi-level,
 * default), self-signed generation and reuse, and real handshakes over BIO pairs: the certificate
 * served for an SNI, the chain, protocol floor, cipher preference, ALPN, HelloRetryRequest, and a
 * store released while its connections live on. Certificates are made at run time in a temporary
 * directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/tls.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char tmpdir[64];

/* --- helpers: files --- */

static const char *tpath(char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);
    return out;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/floe_test_tls_XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Writes the given PEM objects in order: 'c' certificate, 'k' key (from certs and key). */
static void write_pem(const char *path, const char *layout, X509 *const *certs, EVP_PKEY *key)
{
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    size_t ci = 0;
    for (const char *p = layout; *p != '\0'; p++) {
        if (*p == 'c')
            assert_int_equal(PEM_write_bio_X509(bio, certs[ci++]), 1);
        else
            assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    }
    assert_int_equal(BIO_free(bio), 1);
}

static char *slurp(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    *len_r = n;
    return buf;
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* --- helpers: keys and certificates --- */

static EVP_PKEY *ec_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static long serial_next = 1000;

/* A certificate for key: subject CN cn (NULL: none, O=Floe Test instead), subjectAltName san
 * (NULL: none), valid from..to days from now, signed by issuer/issuer_key (NULL: self-signed),
 * a CA when ca. */
static X509 *make_cert(const char *cn, const char *san, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key, long from_days, long to_days, bool ca)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial_next++), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), (int)from_days, 0, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), (int)to_days, 0, NULL));
    X509_NAME *name = X509_get_subject_name(x);
    if (cn != NULL)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)cn, -1, -1, 0),
                         1);
    else
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                    (const unsigned char *)"Floe Test", -1, -1, 0),
                         1);
    assert_int_equal(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name),
                     1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509 *iss = issuer != NULL ? issuer : x;
    add_ext(x, iss, NID_subject_key_identifier, "hash");
    if (ca) {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, iss, NID_basic_constraints, "CA:FALSE");
        add_ext(x, iss, NID_ext_key_usage, "serverAuth");
    }
    if (issuer != NULL)
        add_ext(x, iss, NID_authority_key_identifier, "keyid");
    if (san != NULL)
        add_ext(x, iss, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

/* Writes a self-signed leaf (cert and key in separate files "<stem>.crt", "<stem>.key"). */
static void make_leaf_files(const char *stem, const char *cn, const char *san, char *cert_path,
                            char *key_path)
{
    char name[128];
    EVP_PKEY *k = ec_key();
    X509 *c = make_cert(cn, san, k, NULL, NULL, -1, 365, false);
    snprintf(name, sizeof name, "%s.crt", stem);
    write_pem(tpath(cert_path, name), "c", &c, NULL);
    snprintf(name, sizeof name, "%s.key", stem);
    write_pem(tpath(key_path, name), "k", NULL, k);
    X509_free(c);
    EVP_PKEY_free(k);
}

/* --- helpers: stores and handshakes --- */

struct warns {
    int n;
    char last[1024];
    char all[8192];
};

static void warn_cb(void *arg, const char *line)
{
    struct warns *w = arg;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", line);
    size_t used = strlen(w->all);
    snprintf(w->all + used, sizeof w->all - used, "%s\n", line);
}

static struct warns quiet_warns;

static struct tls_settings settings_for(const struct tls_cert_spec *certs, size_t n)
{
    return (struct tls_settings){
        .certs = certs, .ncerts = n, .warn = warn_cb, .warn_arg = &quiet_warns};
}

static struct tls_store *store_ok(const struct tls_settings *s)
{
    char err[512] = "untouched";
    struct tls_store *st = tls_store_new(s, err, sizeof err);
    if (st == NULL)
        fail_msg("tls_store_new failed: %s", err);
    assert_string_equal(err, "");
    return st;
}

/* Expects tls_store_new to fail; returns its message (static), checked to be one line. */
static const char *store_err(const struct tls_settings *s)
{
    static char err[1024];
    snprintf(err, sizeof err, "untouched");
    ERR_clear_error();
    struct tls_store *st = tls_store_new(s, err, sizeof err);
    if (st != NULL) {
        tls_store_unref(&st);
        fail_msg("tls_store_new succeeded, expected an error");
    }
    assert_null(strchr(err, '\n'));
    assert_true(strlen(err) > 0);
    assert_int_equal(ERR_peek_error(), 0); /* no error left behind for the caller */
    return err;
}

static const char *subj(SSL_CTX *ctx)
{
    static char buf[8][128];
    static int i;
    char *out = buf[i++ % 8];
    const char *r = tls_ctx_subject(ctx, out, sizeof buf[0]);
    return r != NULL ? r : "(null)";
}

static const char *peer_cn(SSL *ssl)
{
    static char buf[128];
    X509 *peer = SSL_get1_peer_certificate(ssl);
    assert_non_null(peer);
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf,
                                        (int)sizeof buf);
    X509_free(peer);
    assert_true(len > 0);
    return buf;
}

static SSL_CTX *client_ctx(int min, int max)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    assert_non_null(c);
    if (min != 0)
        assert_int_equal(SSL_CTX_set_min_proto_version(c, min), 1);
    if (max != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(c, max), 1);
    return c;
}

/* A client SSL (SNI sni unless NULL) and a server SSL from sctx, joined by a BIO pair. */
static void conn_new(SSL_CTX *cctx, const char *sni, SSL_CTX *sctx, SSL **c_r, SSL **s_r)
{
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    assert_non_null(c);
    assert_non_null(s);
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sni != NULL) {
        char name[512]; /* the macro takes a non-const pointer */
        snprintf(name, sizeof name, "%s", sni);
        assert_int_equal(SSL_set_tlsext_host_name(c, name), 1);
    }
    *c_r = c;
    *s_r = s;
}

enum { HS_OK = 0, HS_CLIENT_FAILED = -1, HS_SERVER_FAILED = -2, HS_STUCK = -3 };

static bool hs_pending(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Drives both ends. On a server failure *server_err_r gets its first queued error. */
static int handshake(SSL *c, SSL *s, unsigned long *server_err_r)
{
    ERR_clear_error();
    for (int i = 0; i < 50; i++) {
        int rc = SSL_do_handshake(c);
        if (rc != 1 && !hs_pending(c, rc)) {
            ERR_clear_error();
            return HS_CLIENT_FAILED;
        }
        int rs = SSL_do_handshake(s);
        if (rs != 1 && !hs_pending(s, rs)) {
            if (server_err_r != NULL)
                *server_err_r = ERR_peek_error();
            ERR_clear_error();
            return HS_SERVER_FAILED;
        }
        if (rc == 1 && rs == 1)
            return HS_OK;
    }
    return HS_STUCK;
}

/* Connects with SNI sni to the store and returns the CN the client was served. */
static const char *served_cn(struct tls_store *st, const char *sni)
{
    SSL_CTX *cctx = client_ctx(0, 0);
    SSL *c, *s;
    conn_new(cctx, sni, tls_store_ctx(st), &c, &s);
    assert_int_equal(handshake(c, s, NULL), HS_OK);
    /* The server SSL now runs on the selected context. */
    assert_ptr_equal(SSL_get_SSL_CTX(s), tls_store_select(st, sni));
    const char *cn = peer_cn(c);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    return cn;
}

/* --- loading --- */

static void test_load_separate_files(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX];
    make_leaf_files("sep", "sep.example.com", "DNS:sep.example.com", crt, key);
    struct tls_cert_spec spec = {.file = crt, .key = key};
    struct tls_settings s = settings_for(&spec, 1);
    struct tls_store *st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "sep.example.com");
    assert_ptr_equal(tls_store_select(st, "sep.example.com"), tls_store_ctx(st));
    assert_string_equal(served_cn(st, "sep.example.com"), "sep.example.com");
    tls_store_unref(&st);
    assert_null(st);

    /* The traditional "BEGIN EC PRIVATE KEY" form of the same key loads too. */
    char trad[PATH_MAX];
    BIO *in = BIO_new_file(key, "r");
    assert_non_null(in);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    assert_non_null(k);
    BIO_free(in);
    BIO *out = BIO_new_file(tpath(trad, "sep-trad.key"), "w");
    assert_non_null(out);
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(out, k, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(out);
    EVP_PKEY_free(k);
    size_t n;
    assert_non_null(strstr(slurp(trad, &n), "-----BEGIN EC PRIVATE KEY-----"));
    spec.key = trad;
    st = store_ok(&s);
    assert_string_equal(served_cn(st, "sep.example.com"), "sep.example.com");
    tls_store_unref(&st);
}

/* Root CA -> intermediate -> leaf; the client trusts the root only. */
struct pki {
    EVP_PKEY *root_key, *int_key, *leaf_key;
    X509 *root, *inter, *leaf;
};

static void pki_make(struct pki *p, const char *leaf_name)
{
    char san[160];
    p->root_key = ec_key();
    p->int_key = ec_key();
    p->leaf_key = ec_key();
    p->root = make_cert("Floe Test Root", NULL, p->root_key, NULL, NULL, -1, 3650, true);
    p->inter =
        make_cert("Floe Test Intermediate", NULL, p->int_key, p->root, p->root_key, -1, 3650, true);
    snprintf(san, sizeof san, "DNS:%s", leaf_name);
    p->leaf = make_cert(leaf_name, san, p->leaf_key, p->inter, p->int_key, -1, 365, false);
}

static void pki_free(struct pki *p)
{
    X509_free(p->root);
    X509_free(p->inter);
    X509_free(p->leaf);
    EVP_PKEY_free(p->root_key);
    EVP_PKEY_free(p->int_key);
    EVP_PKEY_free(p->leaf_key);
}

/* Handshake verifying the server against root for host; returns the handshake result and the
 * length of the chain the server sent. */
static int verified_handshake(struct tls_store *st, X509 *root, const char *host, int *chain_len_r)
{
    SSL_CTX *cctx = client_ctx(0, 0);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), root), 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    SSL *c, *s;
    conn_new(cctx, host, tls_store_ctx(st), &c, &s);
    assert_int_equal(SSL_set1_host(c, host), 1);
    int rc = handshake(c, s, NULL);
    if (rc == HS_OK) {
        assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
        *chain_len_r = sk_X509_num(SSL_get_peer_cert_chain(c));
    }
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    return rc;
}

static void test_load_combined_key_cert_chain(void **state)
{
    struct pki p;
    pki_make(&p, "chain.example.com");
    X509 *certs[] = {p.leaf, p.inter};
    char combined[PATH_MAX], keyfirst[PATH_MAX], leafonly[PATH_MAX], key[PATH_MAX];
    write_pem(tpath(combined, "combined.pem"), "ckc", certs, p.leaf_key);
    write_pem(tpath(keyfirst, "keyfirst.pem"), "kcc", certs, p.leaf_key);
    write_pem(tpath(leafonly, "leafonly.pem"), "c", certs, NULL);
    write_pem(tpath(key, "chainleaf.key"), "k", NULL, p.leaf_key);

    int chain_len = 0;
    for (int i = 0; i < 2; i++) {
        struct tls_cert_spec spec = {.file = i == 0 ? combined : keyfirst};
        struct tls_settings s = settings_for(&spec, 1);
        struct tls_store *st = store_ok(&s);
        assert_int_equal(verified_handshake(st, p.root, "chain.example.com", &chain_len), HS_OK);
        assert_int_equal(chain_len, 2); /* leaf + intermediate */
        tls_store_unref(&st);
    }

    /* Control: without the intermediate the same client cannot verify. */
    struct tls_cert_spec bare = {.file = leafonly, .key = key};
    struct tls_settings s = settings_for(&bare, 1);
    struct tls_store *st = store_ok(&s);
    assert_int_equal(verified_handshake(st, p.root, "chain.example.com", &chain_len),
                     HS_CLIENT_FAILED);
    tls_store_unref(&st);
    pki_free(&p);
}

static void test_load_chain_file(void **state)
{
    struct pki p;
    pki_make(&p, "chainfile.example.com");
    char leaf[PATH_MAX], key[PATH_MAX], chain[PATH_MAX], combined[PATH_MAX];
    X509 *certs[] = {p.leaf, p.inter, p.root};
    write_pem(tpath(leaf, "cf-leaf.pem"), "c", certs, NULL);
    write_pem(tpath(key, "cf-leaf.key"), "k", NULL, p.leaf_key);
    write_pem(tpath(chain, "cf-chain.pem"), "c", &certs[1], NULL);
    /* The chain file replaces further certificates in `file`. */
    write_pem(tpath(combined, "cf-combined.pem"), "cckc", certs, p.leaf_key);

    struct tls_cert_spec specs[] = {{.file = leaf, .key = key, .chain = chain},
                                    {.file = combined, .chain = chain}};
    for (size_t i = 0; i < 2; i++) {
        struct warns w = {0};
        struct tls_settings s = settings_for(&specs[i], 1);
        s.warn_arg = &w;
        struct tls_store *st = store_ok(&s);
        assert_int_equal(w.n, 0);
        int chain_len = 0;
        assert_int_equal(verified_handshake(st, p.root, "chainfile.example.com", &chain_len),
                         HS_OK);
        assert_int_equal(chain_len, 2);
        tls_store_unref(&st);
    }
    pki_free(&p);
}

static void test_chain_out_of_order_warns(void **state)
{
    struct pki p;
    pki_make(&p, "order.example.com");
    X509 *certs[] = {p.leaf, p.root, p.inter};
    char file[PATH_MAX];
    write_pem(tpath(file, "order.pem"), "ckcc", certs, p.leaf_key);
    struct warns w = {0};
    struct tls_cert_spec spec = {.file = file};
    struct tls_settings s = settings_for(&spec, 1);
    s.warn_arg = &w;
    struct tls_store *st = store_ok(&s);
    assert_int_equal(w.n, 2); /* the root did not issue the leaf, the intermediate not the root */
    assert_non_null(strstr(w.all, "order.pem: chain certificate 1 did not issue"));
    assert_non_null(strstr(w.all, "order.pem: chain certificate 2 did not issue"));
    tls_store_unref(&st);
    pki_free(&p);
}

static void test_rsa_certificate(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(k);
    X509 *c = make_cert("rsa.example.com", "DNS:rsa.example.com", k, NULL, NULL, -1, 30, false);
    char file[PATH_MAX];
    write_pem(tpath(file, "rsa.pem"), "kc", &c, k);
    struct tls_cert_spec spec = {.file = file};
    struct tls_settings s = settings_for(&spec, 1);
    struct tls_store *st = store_ok(&s);
    /* TLS 1.2 with the default list: ECDHE-RSA with an AEAD. */
    SSL_CTX *cctx = client_ctx(0, TLS1_2_VERSION);
    SSL *cl, *sv;
    conn_new(cctx, "rsa.example.com", tls_store_ctx(st), &cl, &sv);
    assert_int_equal(handshake(cl, sv, NULL), HS_OK);
    assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(cl)),
                        "ECDHE-RSA-AES128-GCM-SHA256");
    SSL_free(cl);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    tls_store_unref(&st);
    X509_free(c);
    EVP_PKEY_free(k);
}

/* --- load errors --- */

static void test_mismatched_key(void **state)
{
    char crt_a[PATH_MAX], key_a[PATH_MAX], crt_b[PATH_MAX], key_b[PATH_MAX], combo[PATH_MAX];
    make_leaf_files("mm-a", "a.example.com", "DNS:a.example.com", crt_a, key_a);
    make_leaf_files("mm-b", "b.example.com", "DNS:b.example.com", crt_b, key_b);
    char expect[2 * PATH_MAX + 64];

    struct tls_cert_spec spec = {.file = crt_a, .key = key_b};
    struct tls_settings s = settings_for(&spec, 1);
    snprintf(expect, sizeof expect, "%s: private key does not match certificate %s", key_b, crt_a);
    assert_string_equal(store_err(&s), expect);

    /* Combined file: the key of another certificate. */
    size_t la, lb;
    static char text[2 * 65536 + 1024];
    snprintf(text, sizeof text, "%s", slurp(crt_a, &la));
    snprintf(text + la, sizeof text - la, "%s", slurp(key_b, &lb));
    write_text(tpath(combo, "mm-combo.pem"), text, la + lb);
    spec = (struct tls_cert_spec){.file = combo};
    snprintf(expect, sizeof expect, "%s: private key does not match certificate", combo);
    assert_string_equal(store_err(&s), expect);

    /* The right key loads (control). */
    spec = (struct tls_cert_spec){.file = crt_a, .key = key_a};
    struct tls_store *st = store_ok(&s);
    tls_store_unref(&st);
}

static void test_missing_files(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX], missing[PATH_MAX], expect[2 * PATH_MAX];
    make_leaf_files("present", "present.example.com", NULL, crt, key);
    tpath(missing, "does-not-exist.pem");
    snprintf(expect, sizeof expect, "%s: cannot open: No such file or directory", missing);

    struct tls_cert_spec spec = {.file = missing, .key = key};
    struct tls_settings s = settings_for(&spec, 1);
    assert_string_equal(store_err(&s), expect);

    spec = (struct tls_cert_spec){.file = crt, .key = missing};
    assert_string_equal(store_err(&s), expect);

    spec = (struct tls_cert_spec){.file = crt, .key = key, .chain = missing};
    assert_string_equal(store_err(&s), expect);

    /* A directory is not a certificate file. */
    spec = (struct tls_cert_spec){.file = tmpdir};
    snprintf(expect, sizeof expect, "%s: not a regular file", tmpdir);
    assert_string_equal(store_err(&s), expect);

    /* An unreadable file: only meaningful when not running as root. */
    if (geteuid() != 0) {
        assert_int_equal(chmod(key, 0), 0);
        spec = (struct tls_cert_spec){.file = crt, .key = key};
        snprintf(expect, sizeof expect, "%s: cannot open: Permission denied", key);
        assert_string_equal(store_err(&s), expect);
        assert_int_equal(chmod(key, 0600), 0);
    }
}

static void test_bad_pem(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX], bad[PATH_MAX], expect[2 * PATH_MAX];
    make_leaf_files("badpem", "badpem.example.com", NULL, crt, key);
    struct tls_cert_spec spec = {.file = bad, .key = key};
    struct tls_settings s = settings_for(&spec, 1);

    /* Not PEM at all; and empty. */
    tpath(bad, "garbage.pem");
    write_text(bad, "this is not a certificate\n", 26);
    snprintf(expect, sizeof expect, "%s: no PEM certificate found", bad);
    assert_string_equal(store_err(&s), expect);
    write_text(bad, "", 0);
    assert_string_equal(store_err(&s), expect);

    /* Armor with a damaged body. */
    static const char damaged[] = "-----BEGIN CERTIFICATE-----\n"
                                  "MIIBszCCAVmgAwIBAgIUNotReallyA!!!Certificate@@@\n"
                                  "-----END CERTIFICATE-----\n";
    write_text(bad, damaged, sizeof damaged - 1);
    snprintf(expect, sizeof expect, "%s: bad certificate PEM: ", bad);
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* Valid base64 that is no certificate. */
    static const char notder[] = "-----BEGIN CERTIFICATE-----\n"
                                 "aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IERFUg==\n"
                                 "-----END CERTIFICATE-----\n";
    write_text(bad, notder, sizeof notder - 1);
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* A good certificate followed by a damaged chain certificate. */
    size_t n;
    static char text[65536 + 4096];
    snprintf(text, sizeof text, "%s%s", slurp(crt, &n), damaged);
    write_text(bad, text, strlen(text));
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* Key file without a key; combined file without a key. */
    spec = (struct tls_cert_spec){.file = crt, .key = crt};
    snprintf(expect, sizeof expect, "%s: no usable private key found", crt);
    assert_memory_equal(store_err(&s), expect, strlen(expect));
    spec = (struct tls_cert_spec){.file = crt};
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* A damaged key. */
    static const char badkey[] = "-----BEGIN PRIVATE KEY-----\n"
                                 "aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IERFUg==\n"
                                 "-----END PRIVATE KEY-----\n";
    tpath(bad, "badkey.pem");
    write_text(bad, badkey, sizeof badkey - 1);
    spec = (struct tls_cert_spec){.file = crt, .key = bad};
    snprintf(expect, sizeof expect, "%s: no usable private key found", bad);
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* A chain file with no certificate. */
    tpath(bad, "emptychain.pem");
    write_text(bad, "\n", 1);
    spec = (struct tls_cert_spec){.file = crt, .key = key, .chain = bad};
    snprintf(expect, sizeof expect, "%s: no PEM certificate found", bad);
    assert_string_equal(store_err(&s), expect);
}

static void test_encrypted_key(void **state)
{
    EVP_PKEY *k = ec_key();
    X509 *c = make_cert("enc.example.com", NULL, k, NULL, NULL, -1, 30, false);
    char crt[PATH_MAX], key[PATH_MAX], expect[2 * PATH_MAX];
    write_pem(tpath(crt, "enc.crt"), "c", &c, NULL);
    BIO *bio = BIO_new_file(tpath(key, "enc.key"), "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k, EVP_aes_128_cbc(),
                                              (const unsigned char *)"secret", 6, NULL, NULL),
                     1);
    BIO_free(bio);
    struct tls_cert_spec spec = {.file = crt, .key = key};
    struct tls_settings s = settings_for(&spec, 1);
    snprintf(expect, sizeof expect, "%s: private key is encrypted (not supported)", key);
    assert_string_equal(store_err(&s), expect);
    X509_free(c);
    EVP_PKEY_free(k);
}

static void test_limits(void **state)
{
    char file[PATH_MAX], expect[2 * PATH_MAX];
    EVP_PKEY *k = ec_key();
    X509 *certs[TLS_CHAIN_MAX + 2];
    for (int i = 0; i < TLS_CHAIN_MAX + 2; i++)
        certs[i] = make_cert("many.example.com", NULL, k, NULL, NULL, -1, 30, false);
    char layout[TLS_CHAIN_MAX + 4];
    memset(layout, 'c', TLS_CHAIN_MAX + 2);
    layout[TLS_CHAIN_MAX + 2] = 'k';
    layout[TLS_CHAIN_MAX + 3] = '\0';
    write_pem(tpath(file, "longchain.pem"), layout, certs, k);
    struct tls_cert_spec spec = {.file = file};
    struct tls_settings s = settings_for(&spec, 1);
    snprintf(expect, sizeof expect, "%s: more than %d chain certificates", file, TLS_CHAIN_MAX);
    assert_string_equal(store_err(&s), expect);
    /* Exactly TLS_CHAIN_MAX intermediates is fine. */
    layout[TLS_CHAIN_MAX + 1] = 'k';
    layout[TLS_CHAIN_MAX + 2] = '\0';
    write_pem(file, layout, certs, k);
    struct tls_store *st = store_ok(&s);
    tls_store_unref(&st);

    /* A file over TLS_FILE_MAX. */
    char *big = malloc(TLS_FILE_MAX + 1);
    assert_non_null(big);
    memset(big, '\n', TLS_FILE_MAX + 1);
    tpath(file, "big.pem");
    write_text(file, big, TLS_FILE_MAX + 1);
    free(big);
    snprintf(expect, sizeof expect, "%s: larger than %d bytes", file, TLS_FILE_MAX);
    assert_string_equal(store_err(&s), expect);

    for (int i = 0; i < TLS_CHAIN_MAX + 2; i++)
        X509_free(certs[i]);
    EVP_PKEY_free(k);
}

static void test_expired_warns(void **state)
{
    EVP_PKEY *k = ec_key();
    X509 *old = make_cert("old.example.com", "DNS:old.example.com", k, NULL, NULL, -30, -1, false);
    X509 *future =
        make_cert("future.example.com", "DNS:future.example.com", k, NULL, NULL, 2, 30, false);
    X509 *fine =
        make_cert("fine.example.com", "DNS:fine.example.com", k, NULL, NULL, -1, 30, false);
    char f_old[PATH_MAX], f_future[PATH_MAX], f_fine[PATH_MAX];
    write_pem(tpath(f_old, "old.pem"), "ck", &old, k);
    write_pem(tpath(f_future, "future.pem"), "ck", &future, k);
    write_pem(tpath(f_fine, "fine.pem"), "ck", &fine, k);

    struct warns w = {0};
    struct tls_cert_spec spec = {.file = f_fine};
    struct tls_settings s = settings_for(&spec, 1);
    s.warn_arg = &w;
    struct tls_store *st = store_ok(&s);
    assert_int_equal(w.n, 0);
    tls_store_unref(&st);

    char expect[2 * PATH_MAX];
    spec.file = f_old;
    st = store_ok(&s); /* expired: a warning, not an error */
    assert_int_equal(w.n, 1);
    snprintf(expect, sizeof expect, "%s: certificate expired on ", f_old);
    assert_memory_equal(w.last, expect, strlen(expect));
    assert_string_equal(served_cn(st, "old.example.com"), "old.example.com");
    tls_store_unref(&st);

    spec.file = f_future;
    st = store_ok(&s);
    assert_int_equal(w.n, 2);
    snprintf(expect, sizeof expect, "%s: certificate not valid before ", f_future);
    assert_memory_equal(w.last, expect, strlen(expect));
    tls_store_unref(&st);

    X509_free(old);
    X509_free(future);
    X509_free(fine);
    EVP_PKEY_free(k);
}

static void test_settings_errors(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX], err[512];
    make_leaf_files("set", "set.example.com", "DNS:set.example.com", crt, key);
    struct tls_cert_spec spec = {.file = crt, .key = key};
    struct tls_settings s = settings_for(&spec, 1);

    s.min_version = "1.1";
    assert_string_equal(store_err(&s), "min_version: \"1.1\" is not 1.2 or 1.3");
    s.min_version = "1.3";
    struct tls_store *st = store_ok(&s);
    assert_int_equal(SSL_CTX_get_min_proto_version(tls_store_ctx(st)), TLS1_3_VERSION);
    tls_store_unref(&st);
    s.min_version = NULL;

    s.ciphers = "NO-SUCH-CIPHER";
    assert_string_equal(store_err(&s), "ciphers: no usable cipher in \"NO-SUCH-CIPHER\"");
    s.ciphers = NULL;
    s.ciphersuites = "TLS_NO_SUCH_SUITE";
    assert_string_equal(store_err(&s), "ciphersuites: not accepted: \"TLS_NO_SUCH_SUITE\"");
    s.ciphersuites = NULL;

    s.default_name = "nomatch.example.net";
    assert_string_equal(store_err(&s),
                        "default_name: \"nomatch.example.net\" matches no certificate");
    s.default_name = NULL;

    s.certs = NULL;
    assert_string_equal(store_err(&s), "certs: 1 certificates announced, none given");
    s.certs = &spec;
    s.ncerts = TLS_CERTS_MAX + 1;
    assert_memory_equal(store_err(&s), "certs: ", 7);
    s.ncerts = 1;
    spec.file = NULL;
    assert_string_equal(store_err(&s), "certs: certificate 1 has no file");
    spec.file = crt;

    /* No certificates and nowhere to keep a self-signed one. */
    s.certs = NULL;
    s.ncerts = 0;
    assert_string_equal(store_err(&s),
                        "selfsigned_path: not set (needed for the default certificate)");

    assert_null(tls_store_new(NULL, err, sizeof err));
    assert_string_equal(err, "tls: no settings");

    /* A short err buffer is cut and terminated; a NULL one is fine. */
    s.certs = &spec;
    s.ncerts = 1;
    s.min_version = "9";
    memset(err, 'x', sizeof err);
    assert_null(tls_store_new(&s, err, 8));
    assert_string_equal(err, "min_ver");
    assert_int_equal(err[8], 'x');
    assert_null(tls_store_new(&s, NULL, 0));
}

static void test_error_queue_preserved(void **state)
{
    char missing[PATH_MAX];
    struct tls_cert_spec spec = {.file = tpath(missing, "nope.pem")};
    struct tls_settings s = settings_for(&spec, 1);
    char err[256];
    ERR_clear_error();
    ERR_raise(ERR_LIB_USER, 42);
    assert_null(tls_store_new(&s, err, sizeof err));
    /* The caller's error is still there, and nothing else. */
    unsigned long e = ERR_get_error();
    assert_int_equal(ERR_GET_LIB(e), ERR_LIB_USER);
    assert_int_equal(ERR_GET_REASON(e), 42);
    assert_int_equal(ERR_get_error(), 0);
}

/* --- SNI selection --- */

struct sni_fixture {
    struct tls_cert_spec specs[8];
    char files[8][PATH_MAX];
};

/* Certificates, in settings order:
 * 0 default.test; 1 mail.example.com; 2 *.example.com; 3 *.b.example.com; 4 other.org (CN only);
 * 5 CN cnignored.test with SAN dup.example.org (CN not used); 6 dup.example.org again (later:
 * loses); 7 IP-only SAN with CN ipcn.test (no DNS SAN: CN used). */
static void sni_fixture_make(struct sni_fixture *f)
{
    static const struct {
        const char *cn, *san;
    } defs[8] = {
        {"default.test", "DNS:default.test"},
        {"mail.example.com", "DNS:mail.example.com"},
        {"wild.example.com", "DNS:*.example.com"},
        {"wild.b.example.com", "DNS:*.b.example.com"},
        {"other.org", NULL},
        {"cnignored.test", "DNS:dup.example.org"},
        {"dup2.example.org", "DNS:dup.example.org,DNS:dup2.example.org"},
        {"ipcn.test", "IP:192.0.2.1"},
    };
    EVP_PKEY *k = ec_key();
    for (int i = 0; i < 8; i++) {
        X509 *c = make_cert(defs[i].cn, defs[i].san, k, NULL, NULL, -1, 30, false);
        char name[32];
        snprintf(name, sizeof name, "sni%d.pem", i);
        write_pem(tpath(f->files[i], name), "ck", &c, k);
        f->specs[i] = (struct tls_cert_spec){.file = f->files[i]};
        X509_free(c);
    }
    EVP_PKEY_free(k);
}

static void test_sni_selection(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    static const struct {
        const char *sni, *cn;
    } cases[] = {
        {"mail.example.com", "mail.example.com"},  /* exact beats *.example.com */
        {"MAIL.Example.COM", "mail.example.com"},  /* case-insensitive */
        {"mail.example.com.", "mail.example.com"}, /* final dot */
        {"x.example.com", "wild.example.com"},     /* wildcard */
        {"a.b.example.com", "wild.b.example.com"}, /* most specific wildcard */
        {"b.example.com", "wild.example.com"},     /* *.example.com covers b */
        {"a.c.example.com", "default.test"},       /* a wildcard covers one label only */
        {"example.com", "default.test"},           /* nor the bare domain */
        {"other.org", "other.org"},                /* CN when no SAN */
        {"cnignored.test", "default.test"},        /* CN ignored when SAN has DNS names */
        {"dup.example.org", "cnignored.test"},     /* first certificate wins a duplicate */
        {"dup2.example.org", "dup2.example.org"},
        {"ipcn.test", "ipcn.test"}, /* no DNS SAN: CN */
        {"default.test", "default.test"},
        {"unknown.net", "default.test"},
        {"*.example.com", "default.test"}, /* not a host name */
        {"", "default.test"},
        {"a..example.com", "default.test"},
        {".example.com", "default.test"},
        {"x.example.com..", "default.test"},
        {"mail.example.com\x01", "default.test"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = subj(tls_store_select(st, cases[i].sni));
        if (strcmp(got, cases[i].cn) != 0)
            fail_msg("select(\"%s\") = %s, want %s", cases[i].sni, got, cases[i].cn);
    }
    assert_ptr_equal(tls_store_select(st, NULL), tls_store_ctx(st));
    assert_null(tls_store_select(NULL, "x"));

    /* Length limits: 253 characters is a name, 254 is not. */
    char name[300];
    memset(name, 'a', sizeof name);
    memcpy(name + 253 - 12, ".example.com", 12);
    name[253] = '\0';
    /* (one label of 241 'a's: the lookup does not check label lengths) */
    assert_string_equal(subj(tls_store_select(st, name)), "wild.example.com");
    memmove(name + 1, name, 254);
    name[254] = '\0';
    assert_string_equal(subj(tls_store_select(st, name)), "default.test");
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_string_equal(subj(tls_store_select(st, name)), "default.test");
    tls_store_unref(&st);
}

static void test_default_name(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);

    s.default_name = "Other.Org";
    struct tls_store *st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "other.org");
    assert_string_equal(subj(tls_store_select(st, NULL)), "other.org");
    assert_string_equal(subj(tls_store_select(st, "unknown.net")), "other.org");
    assert_string_equal(subj(tls_store_select(st, "default.test")), "default.test");
    tls_store_unref(&st);

    /* A name that a wildcard covers, and the wildcard itself. */
    s.default_name = "anything.example.com";
    st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "wild.example.com");
    tls_store_unref(&st);
    s.default_name = "*.b.example.com";
    st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "wild.b.example.com");
    tls_store_unref(&st);

    /* The self-signed certificate as the default next to loaded ones. */
    char ss[PATH_MAX];
    s.selfsigned_path = tpath(ss, "default-ss.pem");
    s.selfsigned_host = "node7.example.net";
    s.default_name = "NODE7.example.net";
    st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "node7.example.net");
    assert_string_equal(subj(tls_store_select(st, "unknown.net")), "node7.example.net");
    assert_string_equal(subj(tls_store_select(st, "node7.example.net")), "node7.example.net");
    assert_string_equal(subj(tls_store_select(st, "mail.example.com")), "mail.example.com");
    assert_string_equal(served_cn(st, NULL), "node7.example.net");
    assert_string_equal(served_cn(st, "x.example.com"), "wild.example.com");
    tls_store_unref(&st);
}

/* --- self-signed --- */

static X509 *read_cert_and_key(const char *path, EVP_PKEY **key_r)
{
    BIO *bio = BIO_new_file(path, "r");
    assert_non_null(bio);
    *key_r = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    assert_non_null(*key_r);
    assert_int_equal(BIO_reset(bio), 0);
    X509 *c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(c);
    BIO_free(bio);
    return c;
}

static void test_selfsigned_generate(void **state)
{
    char dir[PATH_MAX], path[PATH_MAX + 32], err[512];
    tpath(dir, "ssgen");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/self.pem", dir);
    assert_int_equal(tls_selfsigned_generate(path, "Mail.Example.NET", err, sizeof err), 0);
    assert_string_equal(err, "");

    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(dir_entries(dir), 1); /* no temporary file left */

    EVP_PKEY *key;
    X509 *c = read_cert_and_key(path, &key);
    assert_int_equal(X509_check_private_key(c, key), 1);
    char group[64];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(key, group, sizeof group, &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_check_host(c, "mail.example.net", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(c, "other.example.net", 0, 0, NULL), 0);
    char cn[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn) >
                0);
    assert_string_equal(cn, "mail.example.net");
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(c)), 1);
    assert_in_range(days, 3649, 3650);
    assert_true(X509_cmp_current_time(X509_get0_notBefore(c)) < 0);
    assert_int_equal(X509_check_issued(c, c), X509_V_OK); /* self-signed */
    assert_true(X509_verify(c, key) == 1);

    /* A second generation replaces the file (new key). */
    X509 *c_old = c;
    EVP_PKEY *key_old = key;
    assert_int_equal(tls_selfsigned_generate(path, "mail.example.net", err, sizeof err), 0);
    c = read_cert_and_key(path, &key);
    assert_int_not_equal(X509_cmp(c, c_old), 0);
    assert_int_equal(dir_entries(dir), 1);
    X509_free(c_old);
    EVP_PKEY_free(key_old);
    X509_free(c);
    EVP_PKEY_free(key);

    /* An IP address goes into an IP subjectAltName. */
    snprintf(path, sizeof path, "%s/ip.pem", dir);
    assert_int_equal(tls_selfsigned_generate(path, "192.0.2.7", err, sizeof err), 0);
    c = read_cert_and_key(path, &key);
    assert_int_equal(X509_check_ip_asc(c, "192.0.2.7", 0), 1);
    X509_free(c);
    EVP_PKEY_free(key);
    snprintf(path, sizeof path, "%s/ip6.pem", dir);
    assert_int_equal(tls_selfsigned_generate(path, "2001:db8::1", err, sizeof err), 0);
    c = read_cert_and_key(path, &key);
    assert_int_equal(X509_check_ip_asc(c, "2001:db8::1", 0), 1);
    X509_free(c);
    EVP_PKEY_free(key);

    /* A host name longer than a CN may be goes into the SAN only. */
    char longhost[120];
    memset(longhost, 'h', 100);
    snprintf(longhost + 100, sizeof longhost - 100, ".example.net");
    snprintf(path, sizeof path, "%s/long.pem", dir);
    assert_int_equal(tls_selfsigned_generate(path, longhost, err, sizeof err), 0);
    c = read_cert_and_key(path, &key);
    assert_int_equal(X509_check_host(c, longhost, 0, 0, NULL), 1);
    X509_free(c);
    EVP_PKEY_free(key);

    /* Errors: bad host names (nothing written), no directory, no path. */
    int before = dir_entries(dir);
    snprintf(path, sizeof path, "%s/bad.pem", dir);
    static const char *const bad_hosts[] = {"bad host", "a,DNS:evil.com", "", "*.example.com",
                                            "a..b"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        assert_int_equal(tls_selfsigned_generate(path, bad_hosts[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "is not a host name or IP address"));
    }
    assert_int_equal(tls_selfsigned_generate(path, NULL, err, sizeof err), -1);
    assert_int_equal(dir_entries(dir), before);

    char nodir[PATH_MAX + 32], expect[2 * PATH_MAX];
    snprintf(nodir, sizeof nodir, "%s/missing/self.pem", dir);
    assert_int_equal(tls_selfsigned_generate(nodir, "h.example.net", err, sizeof err), -1);
    snprintf(expect, sizeof expect, "%s: cannot create a temporary file: No such file or directory",
             nodir);
    assert_string_equal(err, expect);
    assert_int_equal(tls_selfsigned_generate(NULL, "h.example.net", err, sizeof err), -1);
    assert_string_equal(err, "selfsigned_path: not set");
}

static void test_selfsigned_store_reuse(void **state)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    tpath(dir, "ssreuse");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/selfsigned.pem", dir);
    struct warns w = {0};
    struct tls_settings s = {.selfsigned_path = path,
                             .selfsigned_host = "node1.example.net",
                             .warn = warn_cb,
                             .warn_arg = &w};

    struct tls_store *st = store_ok(&s);
    assert_int_equal(w.n, 0);
    assert_string_equal(subj(tls_store_ctx(st)), "node1.example.net");
    assert_string_equal(subj(tls_store_select(st, "whatever.example")), "node1.example.net");
    struct stat sb1;
    assert_int_equal(stat(path, &sb1), 0);
    assert_int_equal(sb1.st_mode & 07777, 0600);
    unsigned char md1[EVP_MAX_MD_SIZE], md2[EVP_MAX_MD_SIZE];
    unsigned int mdlen1, mdlen2;
    assert_int_equal(
        X509_digest(SSL_CTX_get0_certificate(tls_store_ctx(st)), EVP_sha256(), md1, &mdlen1), 1);

    /* A client that pins the generated certificate verifies it, host name included. */
    EVP_PKEY *key;
    X509 *pinned = read_cert_and_key(path, &key);
    int chain_len;
    assert_int_equal(verified_handshake(st, pinned, "node1.example.net", &chain_len), HS_OK);
    X509_free(pinned);
    EVP_PKEY_free(key);
    tls_store_unref(&st);

    /* Second store: the same file is loaded, not regenerated, even for another host. */
    s.selfsigned_host = "renamed.example.net";
    st = store_ok(&s);
    struct stat sb2;
    assert_int_equal(stat(path, &sb2), 0);
    assert_int_equal(sb1.st_ino, sb2.st_ino);
    assert_int_equal(sb1.st_mtim.tv_sec, sb2.st_mtim.tv_sec);
    assert_int_equal(sb1.st_mtim.tv_nsec, sb2.st_mtim.tv_nsec);
    assert_int_equal(
        X509_digest(SSL_CTX_get0_certificate(tls_store_ctx(st)), EVP_sha256(), md2, &mdlen2), 1);
    assert_int_equal(mdlen1, mdlen2);
    assert_memory_equal(md1, md2, mdlen1);
    assert_string_equal(subj(tls_store_ctx(st)), "node1.example.net");
    tls_store_unref(&st);

    /* Group-readable file: loaded, with a warning. */
    assert_int_equal(chmod(path, 0644), 0);
    st = store_ok(&s);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(w.last, "readable by group or others (mode 0644"));
    tls_store_unref(&st);

    /* A damaged file is an error, and is left as it is. */
    write_text(path, "garbage\n", 8);
    char expect[2 * PATH_MAX];
    snprintf(expect, sizeof expect, "%s: no PEM certificate found", path);
    assert_string_equal(store_err(&s), expect);
    size_t n;
    assert_string_equal(slurp(path, &n), "garbage\n");

    /* Nowhere to write it: the generation error comes back. */
    snprintf(path, sizeof path, "%s/missing/selfsigned.pem", dir);
    snprintf(expect, sizeof expect, "%s: cannot create a temporary file: ", path);
    assert_memory_equal(store_err(&s), expect, strlen(expect));

    /* Default host name. */
    snprintf(path, sizeof path, "%s/localhost.pem", dir);
    s.selfsigned_host = NULL;
    st = store_ok(&s);
    assert_string_equal(subj(tls_store_ctx(st)), "localhost");
    tls_store_unref(&st);
}

/* --- handshakes --- */

static void test_handshake_serves_selected(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    static const struct {
        const char *sni, *cn;
    } cases[] = {
        {"mail.example.com", "mail.example.com"},
        {"x.example.com", "wild.example.com"},
        {"a.b.example.com", "wild.b.example.com"},
        {"a.c.example.com", "default.test"},
        {"other.org", "other.org"},
        {NULL, "default.test"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *sni = cases[i].sni;
        assert_string_equal(served_cn(st, sni), cases[i].cn);
        assert_string_equal(subj(tls_store_select(st, sni)), cases[i].cn);
    }
    /* Both protocol versions switch. */
    SSL_CTX *cctx = client_ctx(0, TLS1_2_VERSION);
    SSL *c, *sv;
    conn_new(cctx, "x.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_int_equal(SSL_version(sv), TLS1_2_VERSION);
    assert_string_equal(peer_cn(c), "wild.example.com");
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    tls_store_unref(&st);
}

static void test_hello_retry_request(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, 0);
    SSL *c, *sv;
    conn_new(cctx, "mail.example.com", tls_store_ctx(st), &c, &sv);
    /* The client's only key share (P-256) is one the server does not take: it asks again. */
    assert_int_equal(SSL_set1_groups_list(c, "P-256:P-384"), 1);
    assert_int_equal(SSL_set1_groups_list(sv, "P-384"), 1);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_int_equal(SSL_get_negotiated_group(sv), NID_secp384r1);
    assert_string_equal(peer_cn(c), "mail.example.com");
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    tls_store_unref(&st);
}

static void test_protocol_floor(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX];
    make_leaf_files("floor", "floor.example.com", "DNS:floor.example.com", crt, key);
    struct tls_cert_spec spec = {.file = crt, .key = key};
    struct tls_settings s = settings_for(&spec, 1);
    struct tls_store *st = store_ok(&s);
    SSL *c, *sv;
    unsigned long serr = 0;

    /* TLS 1.1 at most (OpenSSL 3 needs security level 0 for it). The client does send its
     * hello: the server is the one refusing. */
    SSL_CTX *old = client_ctx(TLS1_1_VERSION, TLS1_1_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0"), 1);
    conn_new(old, "floor.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, &serr), HS_SERVER_FAILED);
    assert_int_equal(ERR_GET_LIB(serr), ERR_LIB_SSL);
    assert_int_equal(ERR_GET_REASON(serr), SSL_R_UNSUPPORTED_PROTOCOL);
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(old);

    /* Control: the same kind of client allowed TLS 1.2 gets it. */
    SSL_CTX *v12 = client_ctx(TLS1_1_VERSION, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(v12, "DEFAULT:@SECLEVEL=0"), 1);
    conn_new(v12, "floor.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_int_equal(SSL_version(sv), TLS1_2_VERSION);
    SSL_free(c);
    SSL_free(sv);
    tls_store_unref(&st);

    /* With min_version 1.3 that client is refused too, on every context. */
    s.min_version = "1.3";
    st = store_ok(&s);
    conn_new(v12, "floor.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, &serr), HS_SERVER_FAILED);
    assert_int_equal(ERR_GET_REASON(serr), SSL_R_UNSUPPORTED_PROTOCOL);
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(v12);
    tls_store_unref(&st);
}

static void test_context_settings(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    SSL_CTX *ctxs[] = {tls_store_ctx(st), tls_store_select(st, "mail.example.com"),
                       tls_store_select(st, "x.example.com")};
    assert_ptr_not_equal(ctxs[0], ctxs[1]);
    for (size_t i = 0; i < 3; i++) {
        uint64_t o = SSL_CTX_get_options(ctxs[i]);
        assert_true(o & SSL_OP_NO_COMPRESSION);
        assert_true(o & SSL_OP_NO_RENEGOTIATION);
        assert_true(o & SSL_OP_CIPHER_SERVER_PREFERENCE);
        assert_false(o & SSL_OP_NO_TICKET);
        assert_int_equal(SSL_CTX_get_min_proto_version(ctxs[i]), TLS1_2_VERSION);
        /* Every TLS <= 1.2 cipher: ECDHE key exchange and an AEAD. */
        STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctxs[i]);
        int legacy = 0;
        for (int j = 0; j < sk_SSL_CIPHER_num(list); j++) {
            const SSL_CIPHER *ci = sk_SSL_CIPHER_value(list, j);
            if (SSL_CIPHER_get_kx_nid(ci) == NID_kx_any)
                continue; /* TLS 1.3 suite */
            legacy++;
            assert_int_equal(SSL_CIPHER_get_kx_nid(ci), NID_kx_ecdhe);
            assert_int_equal(SSL_CIPHER_is_aead(ci), 1);
        }
        assert_int_equal(legacy, 6);
    }
    /* Server preference: the client's first choice is not the server's. */
    SSL_CTX *cctx = client_ctx(0, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(
                         cctx, "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"),
                     1);
    SSL *c, *sv;
    conn_new(cctx, "mail.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(sv)),
                        "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL_free(c);
    SSL_free(sv);
    tls_store_unref(&st);

    /* Configured lists are used. */
    s.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384";
    s.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
    st = store_ok(&s);
    conn_new(cctx, "mail.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(sv)),
                        "ECDHE-ECDSA-AES256-GCM-SHA384");
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    cctx = client_ctx(TLS1_3_VERSION, 0);
    conn_new(cctx, "x.example.com", tls_store_ctx(st), &c, &sv);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(sv)),
                        "TLS_CHACHA20_POLY1305_SHA256");
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    tls_store_unref(&st);
}

/* Handshake offering client_protos; returns the protocol agreed ("" for none). */
static const char *alpn_result(struct tls_store *st, const char *sni, const unsigned char *protos,
                               unsigned int len)
{
    static char out[64];
    SSL_CTX *cctx = client_ctx(0, 0);
    SSL *c, *sv;
    conn_new(cctx, sni, tls_store_ctx(st), &c, &sv);
    if (len > 0)
        assert_int_equal(SSL_set_alpn_protos(c, protos, len), 0);
    assert_int_equal(handshake(c, sv, NULL), HS_OK);
    const unsigned char *p = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(c, &p, &plen);
    snprintf(out, sizeof out, "%.*s", (int)plen, p != NULL ? (const char *)p : "");
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    return out;
}

static void test_alpn(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    static const unsigned char client_both[] = "\x08http/1.1\x02h2";
    static const unsigned char client_h1[] = "\x08http/1.1";
    static const unsigned char client_imap[] = "\x04imap";

    /* None configured: no ALPN answer. */
    assert_string_equal(alpn_result(st, "mail.example.com", client_both, 12), "");

    static const unsigned char server[] = "\x02h2\x08http/1.1";
    assert_int_equal(tls_store_set_alpn(st, server, 12), 0);
    for (int i = 0; i < 2; i++) {
        /* On the default context and on one chosen by SNI. */
        const char *sni = i == 0 ? NULL : "mail.example.com";
        assert_string_equal(alpn_result(st, sni, client_both, 12), "h2"); /* server's order */
        assert_string_equal(alpn_result(st, sni, client_h1, 9), "http/1.1");
        assert_string_equal(alpn_result(st, sni, client_imap, 5), ""); /* no overlap: goes on */
        assert_string_equal(alpn_result(st, sni, NULL, 0), "");
    }

    /* Malformed lists are refused and change nothing. */
    assert_int_equal(tls_store_set_alpn(st, (const unsigned char *)"\x05h2", 3), -1);
    assert_int_equal(tls_store_set_alpn(st, (const unsigned char *)"\x00h2", 3), -1);
    static unsigned char huge[TLS_ALPN_MAX + 2];
    for (size_t i = 0; i + 2 <= sizeof huge; i += 2) {
        huge[i] = 1;
        huge[i + 1] = 'x';
    }
    assert_int_equal(tls_store_set_alpn(st, huge, TLS_ALPN_MAX + 2), -1);
    assert_int_equal(tls_store_set_alpn(st, huge, TLS_ALPN_MAX), 0);
    assert_int_equal(tls_store_set_alpn(st, NULL, 5), -1);
    assert_int_equal(tls_store_set_alpn(NULL, server, 12), -1);
    assert_int_equal(tls_store_set_alpn(st, server, 12), 0);
    assert_string_equal(alpn_result(st, "x.example.com", client_both, 12), "h2");

    /* Cleared. */
    assert_int_equal(tls_store_set_alpn(st, NULL, 0), 0);
    assert_string_equal(alpn_result(st, "x.example.com", client_both, 12), "");
    tls_store_unref(&st);
}

/* The store goes away (configuration reload) while a connection made from it has not yet
 * handshaken: the connection still gets its SNI certificate, and freeing it frees the store
 * (LeakSanitizer checks the second half). */
static void test_store_outlives_refs(void **state)
{
    struct sni_fixture f;
    sni_fixture_make(&f);
    struct tls_settings s = settings_for(f.specs, 8);
    struct tls_store *st = store_ok(&s);
    static const unsigned char server[] = "\x02h2";
    assert_int_equal(tls_store_set_alpn(st, server, 3), 0);

    tls_store_ref(st);
    struct tls_store *second = st;
    tls_store_unref(&second);
    assert_null(second);

    SSL_CTX *cctx = client_ctx(0, 0);
    assert_int_equal(SSL_CTX_set_alpn_protos(cctx, server, 3), 0);
    SSL *c1, *s1, *c2, *s2;
    conn_new(cctx, "a.b.example.com", tls_store_ctx(st), &c1, &s1);
    conn_new(cctx, "mail.example.com", tls_store_ctx(st), &c2, &s2);
    tls_store_unref(&st);
    assert_null(st);
    tls_store_unref(&st);  /* NULL: nothing */
    tls_store_unref(NULL); /* likewise */

    assert_int_equal(handshake(c1, s1, NULL), HS_OK);
    assert_string_equal(peer_cn(c1), "wild.b.example.com");
    const unsigned char *p;
    unsigned int plen;
    SSL_get0_alpn_selected(s1, &p, &plen);
    assert_int_equal(plen, 2);
    /* Free the connection still on the default context last. */
    SSL_free(c1);
    SSL_free(s1);
    assert_int_equal(handshake(c2, s2, NULL), HS_OK);
    assert_string_equal(peer_cn(c2), "mail.example.com");
    SSL_free(c2);
    SSL_free(s2);
    SSL_CTX_free(cctx);
}

static void test_ctx_subject(void **state)
{
    char crt[PATH_MAX], key[PATH_MAX], out[64];
    make_leaf_files("subj", "subject.example.com", "DNS:subject.example.com", crt, key);
    struct tls_cert_spec spec = {.file = crt, .key = key};
    struct tls_settings s = settings_for(&spec, 1);
    struct tls_store *st = store_ok(&s);
    SSL_CTX *ctx = tls_store_ctx(st);
    assert_ptr_equal(tls_ctx_subject(ctx, out, sizeof out), out);
    assert_string_equal(out, "subject.example.com");
    assert_ptr_equal(tls_ctx_subject(ctx, out, 5), out);
    assert_string_equal(out, "subj");
    assert_ptr_equal(tls_ctx_subject(ctx, out, 1), out);
    assert_string_equal(out, "");
    assert_null(tls_ctx_subject(ctx, out, 0));
    assert_null(tls_ctx_subject(ctx, NULL, 10));
    assert_null(tls_ctx_subject(NULL, out, sizeof out));
    tls_store_unref(&st);

    SSL_CTX *empty = SSL_CTX_new(TLS_server_method());
    assert_null(tls_ctx_subject(empty, out, sizeof out));
    SSL_CTX_free(empty);

    /* No CN: "" (the certificate serves as the default only, with a warning). */
    EVP_PKEY *k = ec_key();
    X509 *c = make_cert(NULL, NULL, k, NULL, NULL, -1, 30, false);
    write_pem(crt, "ck", &c, k);
    struct warns w = {0};
    spec = (struct tls_cert_spec){.file = crt};
    s.warn_arg = &w;
    st = store_ok(&s);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(w.last, "no usable DNS name"));
    assert_ptr_equal(tls_ctx_subject(tls_store_ctx(st), out, sizeof out), out);
    assert_string_equal(out, "");
    tls_store_unref(&st);
    X509_free(c);
    EVP_PKEY_free(k);
}

static void test_unusable_names_warned(void **state)
{
    EVP_PKEY *k = ec_key();
    X509 *c = make_cert("names.example.com",
                        "DNS:good.example.com,DNS:bad name.example.com,DNS:a.*.example.com,"
                        "DNS:*.com.,DNS:*,DNS:Upper.Example.COM.",
                        k, NULL, NULL, -1, 30, false);
    char file[PATH_MAX];
    write_pem(tpath(file, "names.pem"), "ck", &c, k);
    struct warns w = {0};
    struct tls_cert_spec spec = {.file = file};
    struct tls_settings s = settings_for(&spec, 1);
    s.warn_arg = &w;
    struct tls_store *st = store_ok(&s);
    assert_int_equal(w.n, 3);
    assert_non_null(strstr(w.all, "ignoring unusable name \"bad name.example.com\""));
    assert_non_null(strstr(w.all, "ignoring unusable name \"a.*.example.com\""));
    assert_non_null(strstr(w.all, "ignoring unusable name \"*\""));
    /* The usable ones work ("*.com." is a wildcard for one label under com). */
    SSL_CTX *ctx = tls_store_ctx(st);
    assert_ptr_equal(tls_store_select(st, "good.example.com"), ctx);
    assert_ptr_equal(tls_store_select(st, "upper.example.com"), ctx);
    tls_store_unref(&st);
    X509_free(c);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_separate_files),
        cmocka_unit_test(test_load_combined_key_cert_chain),
        cmocka_unit_test(test_load_chain_file),
        cmocka_unit_test(test_chain_out_of_order_warns),
        cmocka_unit_test(test_rsa_certificate),
        cmocka_unit_test(test_mismatched_key),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_bad_pem),
        cmocka_unit_test(test_encrypted_key),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_expired_warns),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_error_queue_preserved),
        cmocka_unit_test(test_sni_selection),
        cmocka_unit_test(test_default_name),
        cmocka_unit_test(test_selfsigned_generate),
        cmocka_unit_test(test_selfsigned_store_reuse),
        cmocka_unit_test(test_handshake_serves_selected),
        cmocka_unit_test(test_hello_retry_request),
        cmocka_unit_test(test_protocol_floor),
        cmocka_unit_test(test_context_settings),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_store_outlives_refs),
        cmocka_unit_test(test_ctx_subject),
        cmocka_unit_test(test_unusable_names_warned),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
