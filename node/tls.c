/* Server TLS certificate store: loads and checks certificates, builds one SSL_CTX per certificate,
 * selects one per connection by SNI, and generates a self-signed certificate for fresh installs.
 *
 * How it works:
 * - Every certificate gets its own SSL_CTX with identical protocol settings (floor, ciphers,
 *   options). SNI selection is SSL_set_SSL_CTX() from the servername callback of the default
 *   context; since options, cipher lists and the protocol floor are copied into an SSL when it is
 *   created, identical settings in every context keep a switched SSL consistent.
 * - Names (subjectAltName DNS entries, else the subject CN) are lower-cased and kept in one array
 *   sorted by name, duplicates removed in favour of the earlier certificate. A lookup is then a
 *   binary search for the exact name and, failing that, for "*." + the name without its first
 *   label: a wildcard covers exactly one label, so there is only one wildcard that can match.
 * - Ownership: each context carries a small struct in its ex_data (the ALPN list, and for the
 *   default context the store itself), freed by the ex_data free callback when OpenSSL frees the
 *   context. The default context therefore owns the store: its reference count is the store's
 *   (tls_store_ref/unref map to SSL_CTX_up_ref/free), and every SSL made from it holds it (SSL_new
 *   references the context it was made from as its session context, for life, even after a
 *   switch). The store holds one reference to each other context, dropped when it is freed; an SSL
 *   switched to one of them holds its own. No other context points back at the store, so no
 *   context can outlive what it refers to.
 * - OpenSSL's error queue: every public function restores the queue it was called with (error
 *   marks), so a failed parse here never shows up in a caller's later SSL_get_error(). */
#include "node/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The default TLS <= 1.2 list: forward secrecy and AEAD only, ECDSA before RSA so a server that
 * has both serves the cheaper signature. */
#define TLS_DEFAULT_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* OpenSSL resumes only sessions made under the same id context: set it once for every context,
 * so a session from one certificate's context is recognised after an SNI switch. */
#define TLS_SESSION_ID_CONTEXT "floe"

#define SELFSIGNED_DAYS 3650
#define SELFSIGNED_DEFAULT_HOST "localhost"
/* X.520 ub-common-name: a longer host only goes into the subjectAltName. */
#define CN_MAX 64
/* Room for one warning or error line built here (a path plus a short text). */
#define LINE_MAX_BYTES (PATH_MAX + 512)

struct tls_ctx_extra {
    struct tls_store *store; /* set on the default context only: it owns the store */
    size_t alpn_len;
    unsigned char alpn[TLS_ALPN_MAX];
};

struct tls_name {
    char *name; /* normalized: lower case, no final dot; "*." prefix for wildcards */
    SSL_CTX *ctx;
    size_t order; /* position in settings order, so the first certificate wins a duplicate */
};

struct tls_store {
    SSL_CTX *dflt;  /* the default certificate's context; owns the store */
    SSL_CTX **ctxs; /* every context, dflt among them */
    size_t nctxs;
    size_t ctxs_cap;
    struct tls_name *names; /* sorted by name, unique */
    size_t nnames;
    size_t names_cap;
};

/* State of one tls_store_new() call. */
struct build {
    const struct tls_settings *s;
    int min_version;
    char *err;
    size_t errlen;
    struct tls_store *st;
    size_t order;
    bool selfsigned; /* loading the self-signed certificate: no "no usable name" warning */
};

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int ctx_index = -1;

/* --- messages --- */

/* Control characters would split a line (paths and names come from configuration and files). */
static void sanitize_line(char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            *s = '?';
    }
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    sanitize_line(err);
}

__attribute__((format(printf, 2, 3))) static void build_warn(const struct build *b, const char *fmt,
                                                             ...)
{
    char line[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sanitize_line(line);
    if (b->s->warn != NULL)
        b->s->warn(b->s->warn_arg, line);
    else
        fprintf(stderr, "tls: warning: %s\n", line);
}

/* The reason of the newest OpenSSL error, for messages. */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown OpenSSL error";
}

static bool ossl_last_is(int lib, int reason)
{
    unsigned long e = ERR_peek_last_error();
    return e != 0 && ERR_GET_LIB(e) == lib && ERR_GET_REASON(e) == reason;
}

/* --- names --- */

/* Lower-cases name[0..len) into out (TLS_NAME_MAX + 1 bytes) without a final dot. Accepts
 * letters, digits, '-', '_' and dots between non-empty labels; with allow_wild, also a leftmost
 * label that is exactly "*" followed by at least one more label. Returns false for anything else.
 */
static bool name_normalize(const char *name, size_t len, bool allow_wild, char *out)
{
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > TLS_NAME_MAX)
        return false;
    size_t start = 0;
    if (name[0] == '*') {
        if (!allow_wild || len < 3 || name[1] != '.')
            return false;
        out[0] = '*';
        out[1] = '.';
        start = 2;
    }
    bool label_empty = true;
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c == '.') {
            if (label_empty)
                return false;
            label_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label_empty = false;
        } else {
            return false;
        }
        out[i] = (char)c;
    }
    if (label_empty)
        return false;
    out[len] = '\0';
    return true;
}

static int name_cmp(const void *a, const void *b)
{
    const struct tls_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int name_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct tls_name *)elem)->name);
}

/* Sorts the names and drops later duplicates, so a binary search finds the first certificate. */
static void names_sort(struct tls_store *st)
{
    if (st->nnames == 0)
        return;
    qsort(st->names, st->nnames, sizeof st->names[0], name_cmp);
    size_t keep = 1;
    for (size_t i = 1; i < st->nnames; i++) {
        if (strcmp(st->names[i].name, st->names[keep - 1].name) == 0)
            free(st->names[i].name);
        else
            st->names[keep++] = st->names[i];
    }
    st->nnames = keep;
}

static SSL_CTX *names_find(const struct tls_store *st, const char *norm)
{
    if (st->nnames == 0)
        return NULL;
    const struct tls_name *n =
        bsearch(norm, st->names, st->nnames, sizeof st->names[0], name_key_cmp);
    return n != NULL ? n->ctx : NULL;
}

/* Exact match, else the one wildcard that covers norm's first label. */
static SSL_CTX *names_lookup(const struct tls_store *st, const char *norm)
{
    SSL_CTX *ctx = names_find(st, norm);
    if (ctx != NULL || norm[0] == '*')
        return ctx;
    const char *dot = strchr(norm, '.');
    if (dot == NULL)
        return NULL;
    char wild[TLS_NAME_MAX + 2];
    snprintf(wild, sizeof wild, "*%s", dot);
    return names_find(st, wild);
}

/* 0 added, 1 skipped (unusable, warned), -1 out of memory. */
static int name_add(struct build *b, const char *file, const char *name, size_t len, SSL_CTX *ctx)
{
    char norm[TLS_NAME_MAX + 1];
    if (memchr(name, '\0', len) != NULL || !name_normalize(name, len, true, norm)) {
        build_warn(b, "%s: ignoring unusable name \"%.*s\"", file, (int)(len > 80 ? 80 : len),
                   name);
        return 1;
    }
    struct tls_store *st = b->st;
    if (st->nnames == st->names_cap) {
        size_t cap = st->names_cap != 0 ? st->names_cap * 2 : 16;
        struct tls_name *n = realloc(st->names, cap * sizeof *n);
        if (n == NULL)
            return -1;
        st->names = n;
        st->names_cap = cap;
    }
    char *copy = strdup(norm);
    if (copy == NULL)
        return -1;
    st->names[st->nnames++] = (struct tls_name){.name = copy, .ctx = ctx, .order = b->order};
    return 0;
}

/* The index of the subject's last CN (the most specific one), or -1. */
static int subject_cn_index(const X509_NAME *subject)
{
    int idx = -1;
    for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
         i = X509_NAME_get_index_by_NID(subject, NID_commonName, i))
        idx = i;
    return idx;
}

static bool is_ip_literal(const char *s)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* Adds the names ctx serves: subjectAltName DNS entries, or the subject CN when there are none.
 * Returns 0, or -1 with err set. */
static int cert_names(struct build *b, const char *file, X509 *cert, SSL_CTX *ctx)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int ndns = 0, added = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        if (++ndns > TLS_NAMES_MAX) {
            GENERAL_NAMES_free(gens);
            set_err(b->err, b->errlen, "%s: more than %d DNS names", file, TLS_NAMES_MAX);
            return -1;
        }
        const ASN1_IA5STRING *s = g->d.dNSName;
        int rc = name_add(b, file, (const char *)ASN1_STRING_get0_data(s),
                          (size_t)ASN1_STRING_length(s), ctx);
        if (rc < 0) {
            GENERAL_NAMES_free(gens);
            set_err(b->err, b->errlen, "%s: out of memory", file);
            return -1;
        }
        added += rc == 0;
    }
    GENERAL_NAMES_free(gens);
    if (ndns == 0) {
        const X509_NAME *subject = X509_get_subject_name(cert);
        int idx = subject_cn_index(subject);
        unsigned char *cn = NULL;
        int len = idx >= 0 ? ASN1_STRING_to_UTF8(
                                 &cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)))
                           : -1;
        int rc = 1;
        /* An IP address in the CN (a self-signed certificate for an address) is no SNI name. */
        if (len >= 0 && !is_ip_literal((const char *)cn))
            rc = name_add(b, file, (const char *)cn, (size_t)len, ctx);
        OPENSSL_free(cn);
        if (rc < 0) {
            set_err(b->err, b->errlen, "%s: out of memory", file);
            return -1;
        }
        added += rc == 0;
    }
    if (added == 0 && !b->selfsigned)
        build_warn(b, "%s: certificate has no usable DNS name; it can only serve as the default",
                   file);
    return 0;
}

/* --- contexts --- */

static void store_destroy(struct tls_store *st)
{
    for (size_t i = 0; i < st->nctxs; i++)
        if (st->ctxs[i] != st->dflt)
            SSL_CTX_free(st->ctxs[i]);
    for (size_t i = 0; i < st->nnames; i++)
        free(st->names[i].name);
    free(st->ctxs);
    free(st->names);
    free(st);
}

/* Runs when OpenSSL frees a context (any context: ptr is NULL for those not made here). */
static void ctx_extra_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    struct tls_ctx_extra *x = ptr;
    if (x == NULL)
        return;
    if (x->store != NULL)
        store_destroy(x->store);
    free(x);
}

static void index_init(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_extra_free);
}

static struct tls_ctx_extra *ctx_extra(const SSL_CTX *ctx)
{
    return ctx_index >= 0 ? SSL_CTX_get_ex_data(ctx, ctx_index) : NULL;
}

/* RFC 7301 §3.2: the server picks; here the first of its own protocols that the client offers. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tls_ctx_extra *x = arg;
    for (size_t i = 0; i < x->alpn_len; i += 1 + (size_t)x->alpn[i]) {
        const unsigned char *proto = &x->alpn[i + 1];
        size_t plen = x->alpn[i];
        for (size_t j = 0; j < inlen;) {
            size_t clen = in[j];
            if (clen == 0 || clen > inlen - j - 1)
                break; /* malformed client list: stop reading it */
            if (clen == plen && memcmp(&in[j + 1], proto, plen) == 0) {
                *out = proto;
                *outlen = (unsigned char)plen;
                return SSL_TLSEXT_ERR_OK;
            }
            j += 1 + clen;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Installed on the default context only. OpenSSL calls it once per ClientHello (again after a
 * HelloRetryRequest, through the session context), with or without SNI. */
static int servername_cb(SSL *ssl, int *al, void *arg)
{
    struct tls_store *st = arg;
    SSL_CTX *want = tls_store_select(st, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (want != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, want) != want) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* A context with the protocol settings and no certificate yet, recorded in the store. */
static SSL_CTX *ctx_new(struct build *b)
{
    const struct tls_settings *s = b->s;
    struct tls_store *st = b->st;
    if (st->nctxs == st->ctxs_cap) {
        size_t cap = st->ctxs_cap != 0 ? st->ctxs_cap * 2 : 4;
        SSL_CTX **c = realloc(st->ctxs, cap * sizeof *c);
        if (c == NULL) {
            set_err(b->err, b->errlen, "tls: out of memory");
            return NULL;
        }
        st->ctxs = c;
        st->ctxs_cap = cap;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct tls_ctx_extra *x = calloc(1, sizeof *x);
    if (ctx == NULL || x == NULL || !SSL_CTX_set_ex_data(ctx, ctx_index, x)) {
        set_err(b->err, b->errlen, "tls: cannot create a TLS context: %s",
                x == NULL ? "out of memory" : ossl_reason());
        free(x);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* From here the context frees x. */
    st->ctxs[st->nctxs++] = ctx;

    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    /* Idle connections give their read and write buffers back (DESIGN §3: ~32 KiB per idle
     * connection). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_min_proto_version(ctx, b->min_version)) {
        set_err(b->err, b->errlen, "min_version: rejected by OpenSSL: %s", ossl_reason());
        return NULL;
    }
    const char *ciphers = s->ciphers != NULL ? s->ciphers : TLS_DEFAULT_CIPHERS;
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        set_err(b->err, b->errlen, "ciphers: no usable cipher in \"%.200s\"", ciphers);
        return NULL;
    }
    if (s->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, s->ciphersuites)) {
        set_err(b->err, b->errlen, "ciphersuites: not accepted: \"%.200s\"", s->ciphersuites);
        return NULL;
    }
    /* Only matters when an operator lists DHE ciphers: then use standard groups sized to the
     * certificate rather than failing those handshakes. */
    SSL_CTX_set_dh_auto(ctx, 1);
    if (!SSL_CTX_set_session_id_context(ctx, (const unsigned char *)TLS_SESSION_ID_CONTEXT,
                                        sizeof TLS_SESSION_ID_CONTEXT - 1)) {
        set_err(b->err, b->errlen, "tls: cannot set the session id context: %s", ossl_reason());
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, x);
    return ctx;
}

/* --- files --- */

/* Reads a whole regular file of at most TLS_FILE_MAX bytes. The caller frees with buf_free(). */
static int read_file(struct build *b, const char *path, unsigned char **buf_r, size_t *len_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set_err(b->err, b->errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        set_err(b->err, b->errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        set_err(b->err, b->errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (sb.st_size > TLS_FILE_MAX) {
        set_err(b->err, b->errlen, "%s: larger than %d bytes", path, TLS_FILE_MAX);
        close(fd);
        return -1;
    }
    /* One byte more than the size tells a file that grew while being read. */
    size_t cap = (size_t)sb.st_size + 1, len = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        set_err(b->err, b->errlen, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_err(b->err, b->errlen, "%s: read error: %s", path, strerror(errno));
            OPENSSL_clear_free(buf, cap);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len == cap) {
        set_err(b->err, b->errlen, "%s: changed while being read", path);
        OPENSSL_clear_free(buf, cap);
        return -1;
    }
    *buf_r = buf;
    *len_r = len;
    return 0;
}

/* Files may hold private keys: wipe them. */
static void buf_free(unsigned char *buf, size_t len)
{
    if (buf != NULL)
        OPENSSL_clear_free(buf, len + 1);
}

/* Never prompt on a terminal for a passphrase: note that one was wanted and fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    *(bool *)u = true;
    return -1;
}

/* Reads the next certificate from bio into *cert_r (NULL at the end of the file).
 * Returns 0, or -1 with err set when a certificate block is damaged. */
static int pem_next_cert(struct build *b, const char *path, BIO *bio, X509 **cert_r)
{
    bool asked = false; /* an encrypted certificate block: fails like any damaged one */
    ERR_set_mark();
    *cert_r = PEM_read_bio_X509(bio, NULL, no_passphrase, &asked);
    if (*cert_r == NULL && !ossl_last_is(ERR_LIB_PEM, PEM_R_NO_START_LINE)) {
        set_err(b->err, b->errlen, "%s: bad certificate PEM: %s", path, ossl_reason());
        ERR_pop_to_mark();
        return -1;
    }
    ERR_pop_to_mark();
    return 0;
}

static bool bio_from(struct build *b, const char *path, const unsigned char *buf, size_t len,
                     BIO **bio_r)
{
    *bio_r = BIO_new_mem_buf(buf, (int)len); /* len <= TLS_FILE_MAX */
    if (*bio_r == NULL)
        set_err(b->err, b->errlen, "%s: out of memory", path);
    return *bio_r != NULL;
}

static void format_time(const ASN1_TIME *t, char *out, size_t outlen)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, outlen, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, outlen, "?");
}

static void check_validity(struct build *b, const char *path, X509 *cert, const char *what)
{
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
        format_time(X509_get0_notAfter(cert), when, sizeof when);
        build_warn(b, "%s: %s expired on %s", path, what, when);
    } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
        format_time(X509_get0_notBefore(cert), when, sizeof when);
        build_warn(b, "%s: %s not valid before %s", path, what, when);
    }
}

/* A certificate with its key and intermediates, as read from the files of one spec. */
struct cert_files {
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
};

static void cert_files_free(struct cert_files *f)
{
    X509_free(f->leaf);
    EVP_PKEY_free(f->key);
    sk_X509_pop_free(f->chain, X509_free);
}

/* Reads the remaining certificates of bio as the chain. */
static int read_chain(struct build *b, const char *path, BIO *bio, struct cert_files *f)
{
    for (;;) {
        X509 *c;
        if (pem_next_cert(b, path, bio, &c) < 0)
            return -1;
        if (c == NULL)
            return 0;
        if (sk_X509_num(f->chain) == TLS_CHAIN_MAX) {
            X509_free(c);
            set_err(b->err, b->errlen, "%s: more than %d chain certificates", path, TLS_CHAIN_MAX);
            return -1;
        }
        if (!sk_X509_push(f->chain, c)) {
            X509_free(c);
            set_err(b->err, b->errlen, "%s: out of memory", path);
            return -1;
        }
    }
}

static int read_key(struct build *b, const char *path, const unsigned char *buf, size_t len,
                    struct cert_files *f)
{
    BIO *bio;
    if (!bio_from(b, path, buf, len, &bio))
        return -1;
    bool asked = false;
    ERR_set_mark();
    f->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &asked);
    BIO_free(bio);
    if (f->key == NULL) {
        if (asked)
            set_err(b->err, b->errlen, "%s: private key is encrypted (not supported)", path);
        else
            set_err(b->err, b->errlen, "%s: no usable private key found (%s)", path, ossl_reason());
        ERR_pop_to_mark();
        return -1;
    }
    ERR_pop_to_mark();
    return 0;
}

/* Reads and checks the files of one spec. Returns 0, or -1 with err set. */
static int cert_files_load(struct build *b, const struct tls_cert_spec *spec, struct cert_files *f)
{
    unsigned char *buf = NULL, *kbuf = NULL, *cbuf = NULL;
    size_t len = 0, klen = 0, clen = 0;
    BIO *bio = NULL, *cbio = NULL;
    int rc = -1;

    f->chain = sk_X509_new_null();
    if (f->chain == NULL) {
        set_err(b->err, b->errlen, "%s: out of memory", spec->file);
        return -1;
    }
    if (read_file(b, spec->file, &buf, &len) < 0 || !bio_from(b, spec->file, buf, len, &bio))
        goto out;
    if (pem_next_cert(b, spec->file, bio, &f->leaf) < 0)
        goto out;
    if (f->leaf == NULL) {
        set_err(b->err, b->errlen, "%s: no PEM certificate found", spec->file);
        goto out;
    }
    if (spec->chain == NULL) {
        if (read_chain(b, spec->file, bio, f) < 0)
            goto out;
    } else {
        if (read_file(b, spec->chain, &cbuf, &clen) < 0 ||
            !bio_from(b, spec->chain, cbuf, clen, &cbio) || read_chain(b, spec->chain, cbio, f) < 0)
            goto out;
        if (sk_X509_num(f->chain) == 0) {
            set_err(b->err, b->errlen, "%s: no PEM certificate found", spec->chain);
            goto out;
        }
    }
    if (spec->key == NULL) {
        if (read_key(b, spec->file, buf, len, f) < 0)
            goto out;
    } else if (read_file(b, spec->key, &kbuf, &klen) < 0 ||
               read_key(b, spec->key, kbuf, klen, f) < 0) {
        goto out;
    }
    ERR_set_mark();
    int match = X509_check_private_key(f->leaf, f->key);
    ERR_pop_to_mark();
    if (match != 1) {
        if (spec->key == NULL)
            set_err(b->err, b->errlen, "%s: private key does not match certificate", spec->file);
        else
            set_err(b->err, b->errlen, "%s: private key does not match certificate %s", spec->key,
                    spec->file);
        goto out;
    }

    check_validity(b, spec->file, f->leaf, "certificate");
    const char *chain_path = spec->chain != NULL ? spec->chain : spec->file;
    X509 *prev = f->leaf;
    for (int i = 0; i < sk_X509_num(f->chain); i++) {
        X509 *c = sk_X509_value(f->chain, i);
        char what[64];
        snprintf(what, sizeof what, "chain certificate %d", i + 1);
        check_validity(b, chain_path, c, what);
        ERR_set_mark();
        int issued = X509_check_issued(c, prev);
        ERR_pop_to_mark();
        if (issued != X509_V_OK)
            build_warn(b, "%s: %s did not issue the certificate before it (chain out of order?)",
                       chain_path, what);
        prev = c;
    }
    rc = 0;
out:
    BIO_free(bio);
    BIO_free(cbio);
    buf_free(buf, len);
    buf_free(kbuf, klen);
    buf_free(cbuf, clen);
    return rc;
}

/* Loads one certificate into a new context of the store. Returns the context, or NULL with err
 * set. */
static SSL_CTX *cert_add(struct build *b, const struct tls_cert_spec *spec)
{
    struct cert_files f = {0};
    SSL_CTX *ctx = NULL;
    if (cert_files_load(b, spec, &f) < 0)
        goto out;
    ctx = ctx_new(b);
    if (ctx == NULL)
        goto out;
    ERR_set_mark();
    bool ok = SSL_CTX_use_certificate(ctx, f.leaf) == 1 &&
              SSL_CTX_use_PrivateKey(ctx, f.key) == 1 && SSL_CTX_set1_chain(ctx, f.chain) == 1;
    if (!ok)
        set_err(b->err, b->errlen, "%s: certificate not usable: %s", spec->file, ossl_reason());
    ERR_pop_to_mark();
    if (!ok || cert_names(b, spec->file, f.leaf, ctx) < 0)
        ctx = NULL; /* the store frees it */
    b->order++;
out:
    cert_files_free(&f);
    return ctx;
}

static const char *selfsigned_host(const struct tls_settings *s)
{
    return s->selfsigned_host != NULL ? s->selfsigned_host : SELFSIGNED_DEFAULT_HOST;
}

/* Loads the self-signed certificate, generating it first when its file does not exist. */
static SSL_CTX *selfsigned_add(struct build *b)
{
    const char *path = b->s->selfsigned_path;
    if (path == NULL || path[0] == '\0') {
        set_err(b->err, b->errlen, "selfsigned_path: not set (needed for the default certificate)");
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT) {
            set_err(b->err, b->errlen, "%s: cannot stat: %s", path, strerror(errno));
            return NULL;
        }
        if (tls_selfsigned_generate(path, selfsigned_host(b->s), b->err, b->errlen) < 0)
            return NULL;
    } else if ((sb.st_mode & 077) != 0) {
        build_warn(b, "%s: private key readable by group or others (mode %04o, want 0600)", path,
                   (unsigned)(sb.st_mode & 07777));
    }
    b->selfsigned = true;
    SSL_CTX *ctx = cert_add(b, &(struct tls_cert_spec){.file = path});
    b->selfsigned = false;
    return ctx;
}

/* The default context per settings->default_name. */
static SSL_CTX *default_pick(struct build *b)
{
    const struct tls_settings *s = b->s;
    if (s->ncerts == 0)
        return selfsigned_add(b);
    if (s->default_name == NULL)
        return b->st->ctxs[0];
    char norm[TLS_NAME_MAX + 1], host[TLS_NAME_MAX + 1];
    if (name_normalize(s->default_name, strlen(s->default_name), true, norm)) {
        SSL_CTX *ctx = names_lookup(b->st, norm);
        if (ctx != NULL)
            return ctx;
        const char *h = selfsigned_host(s);
        if (name_normalize(h, strlen(h), false, host) && strcmp(norm, host) == 0)
            return selfsigned_add(b);
    }
    set_err(b->err, b->errlen, "default_name: \"%.*s\" matches no certificate", TLS_NAME_MAX,
            s->default_name);
    return NULL;
}

/* --- public --- */

struct tls_store *tls_store_new(const struct tls_settings *s, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL) {
        set_err(err, errlen, "tls: no settings");
        return NULL;
    }
    if (s->ncerts > TLS_CERTS_MAX) {
        set_err(err, errlen, "certs: %zu certificates (at most %d)", s->ncerts, TLS_CERTS_MAX);
        return NULL;
    }
    if (s->ncerts > 0 && s->certs == NULL) {
        set_err(err, errlen, "certs: %zu certificates announced, none given", s->ncerts);
        return NULL;
    }
    struct build b = {.s = s, .err = err, .errlen = errlen};
    if (s->min_version == NULL || strcmp(s->min_version, "1.2") == 0) {
        b.min_version = TLS1_2_VERSION;
    } else if (strcmp(s->min_version, "1.3") == 0) {
        b.min_version = TLS1_3_VERSION;
    } else {
        set_err(err, errlen, "min_version: \"%.32s\" is not 1.2 or 1.3", s->min_version);
        return NULL;
    }
    for (size_t i = 0; i < s->ncerts; i++) {
        if (s->certs[i].file == NULL || s->certs[i].file[0] == '\0') {
            set_err(err, errlen, "certs: certificate %zu has no file", i + 1);
            return NULL;
        }
    }
    if (CRYPTO_THREAD_run_once(&index_once, index_init) != 1 || ctx_index < 0) {
        set_err(err, errlen, "tls: cannot register context data");
        return NULL;
    }
    b.st = calloc(1, sizeof *b.st);
    if (b.st == NULL) {
        set_err(err, errlen, "tls: out of memory");
        return NULL;
    }

    ERR_set_mark();
    SSL_CTX *dflt = NULL;
    size_t i;
    for (i = 0; i < s->ncerts; i++)
        if (cert_add(&b, &s->certs[i]) == NULL)
            break;
    if (i == s->ncerts) {
        names_sort(b.st);
        dflt = default_pick(&b);
        names_sort(b.st); /* again: the self-signed certificate may have added names */
    }
    ERR_pop_to_mark();
    if (dflt == NULL) {
        /* No context owns the store yet: free each context (and its extra) here. */
        b.st->dflt = NULL;
        store_destroy(b.st);
        return NULL;
    }
    b.st->dflt = dflt;
    ctx_extra(dflt)->store = b.st;
    SSL_CTX_set_tlsext_servername_callback(dflt, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(dflt, b.st);
    return b.st;
}

void tls_store_ref(struct tls_store *st)
{
    if (st != NULL)
        SSL_CTX_up_ref(st->dflt);
}

void tls_store_unref(struct tls_store **st)
{
    if (st == NULL || *st == NULL)
        return;
    SSL_CTX *dflt = (*st)->dflt;
    *st = NULL;
    SSL_CTX_free(dflt); /* the last reference frees the store through ctx_extra_free() */
}

SSL_CTX *tls_store_ctx(struct tls_store *st)
{
    return st != NULL ? st->dflt : NULL;
}

SSL_CTX *tls_store_select(struct tls_store *st, const char *name)
{
    if (st == NULL)
        return NULL;
    char norm[TLS_NAME_MAX + 1];
    /* strnlen: a longer name is rejected without reading all of it. */
    if (name == NULL || !name_normalize(name, strnlen(name, TLS_NAME_MAX + 2), false, norm))
        return st->dflt;
    SSL_CTX *ctx = names_lookup(st, norm);
    return ctx != NULL ? ctx : st->dflt;
}

int tls_store_set_alpn(struct tls_store *st, const unsigned char *protos, size_t len)
{
    if (st == NULL || len > TLS_ALPN_MAX || (len > 0 && protos == NULL))
        return -1;
    /* RFC 7301 §3.1: a list of non-empty length-prefixed names that fills the buffer exactly. */
    for (size_t i = 0; i < len; i += 1 + (size_t)protos[i])
        if (protos[i] == 0 || protos[i] > len - i - 1)
            return -1;
    for (size_t i = 0; i < st->nctxs; i++) {
        struct tls_ctx_extra *x = ctx_extra(st->ctxs[i]);
        if (x == NULL)
            return -1;
        if (len > 0)
            memcpy(x->alpn, protos, len);
        x->alpn_len = len;
    }
    return 0;
}

const char *tls_ctx_subject(SSL_CTX *ctx, char *out, size_t outlen)
{
    if (ctx == NULL || out == NULL || outlen == 0)
        return NULL;
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert == NULL)
        return NULL;
    out[0] = '\0';
    const X509_NAME *subject = X509_get_subject_name(cert);
    int idx = subject_cn_index(subject);
    if (idx < 0)
        return out;
    unsigned char *cn = NULL;
    ERR_set_mark();
    int len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
    ERR_pop_to_mark();
    if (len > 0) {
        size_t n = (size_t)len < outlen - 1 ? (size_t)len : outlen - 1;
        memcpy(out, cn, n);
        out[n] = '\0';
        sanitize_line(out);
    }
    OPENSSL_free(cn);
    return out;
}

/* --- self-signed certificate --- */

static bool ext_add(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    bool ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static X509 *selfsigned_make(EVP_PKEY *key, const char *host, bool is_ip)
{
    X509 *x = X509_new();
    BIGNUM *serial = NULL;
    unsigned char rnd[16];
    /* RFC 5280 §4.1.2.2: positive, at most 20 bytes; random so that reissues never collide. */
    bool ok = x != NULL && X509_set_version(x, X509_VERSION_3) && RAND_bytes(rnd, sizeof rnd) == 1;
    if (ok) {
        rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
        serial = BN_bin2bn(rnd, sizeof rnd, NULL);
        ok = serial != NULL && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL;
    }
    BN_free(serial);
    /* An hour back: clients with a slightly slow clock accept it at once. */
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_time_adj_ex(X509_getm_notAfter(x), SELFSIGNED_DAYS, 0, NULL) != NULL;
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    const char *cn = strlen(host) <= CN_MAX ? host : "floe";
    ok = ok &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) == 1 &&
         X509_set_issuer_name(x, name) == 1 && X509_set_pubkey(x, key) == 1;
    char san[TLS_NAME_MAX + 8];
    snprintf(san, sizeof san, "%s:%s", is_ip ? "IP" : "DNS", host);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    /* No keyUsage: OpenSSL (and others) then still treat the certificate as self-signed when a
     * client pins it as its own trust anchor. */
    ok = ok && ext_add(x, &v3, NID_basic_constraints, "critical,CA:FALSE") &&
         ext_add(x, &v3, NID_ext_key_usage, "serverAuth") &&
         ext_add(x, &v3, NID_subject_key_identifier, "hash") &&
         ext_add(x, &v3, NID_subject_alt_name, san) && X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Writes data to path through a temporary file in the same directory, so readers see the old
 * file or the whole new one, never a part. */
static int write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp) {
        set_err(err, errlen, "%.200s...: path too long", path);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno));
        return -1;
    }
    const char *what = "write";
    int rc = fchmod(fd, 0600);
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = -1;
        else
            off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0) {
        what = "fsync";
        rc = -1;
    }
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        what = "close";
        saved = errno;
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        what = "rename";
        saved = errno;
        rc = -1;
    }
    if (rc != 0) {
        set_err(err, errlen, "%s: %s failed: %s", path, what, strerror(saved));
        unlink(tmp);
        return -1;
    }
    /* Make the rename durable. Failing here leaves a complete file that a crash might undo, in
     * which case the next start generates another: not worth failing the caller for. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0'; /* a file in "/" */
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int tls_selfsigned_generate(const char *path, const char *host, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (path == NULL || path[0] == '\0') {
        set_err(err, errlen, "selfsigned_path: not set");
        return -1;
    }
    char norm[TLS_NAME_MAX + 1];
    bool is_ip = host != NULL && is_ip_literal(host);
    if (host == NULL || (!is_ip && !name_normalize(host, strlen(host), false, norm))) {
        set_err(err, errlen, "%s: \"%.*s\" is not a host name or IP address", path, TLS_NAME_MAX,
                host != NULL ? host : "");
        return -1;
    }
    if (is_ip)
        snprintf(norm, sizeof norm, "%s", host);

    ERR_set_mark();
    int rc = -1;
    X509 *x = NULL;
    BIO *mem = NULL;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL || (x = selfsigned_make(key, norm, is_ip)) == NULL) {
        set_err(err, errlen, "%s: cannot generate the certificate: %s", path, ossl_reason());
        goto out;
    }
    /* Secure memory BIO: the key's PEM is wiped when freed. */
    mem = BIO_new(BIO_s_secmem());
    if (mem == NULL || !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(mem, x)) {
        set_err(err, errlen, "%s: cannot encode the certificate: %s", path, ossl_reason());
        goto out;
    }
    char *data;
    long len = BIO_get_mem_data(mem, &data);
    if (len <= 0) {
        set_err(err, errlen, "%s: cannot encode the certificate", path);
        goto out;
    }
    rc = write_atomic(path, data, (size_t)len, err, errlen);
out:
    BIO_free(mem);
    X509_free(x);
    EVP_PKEY_free(key);
    ERR_pop_to_mark();
    return rc;
}
