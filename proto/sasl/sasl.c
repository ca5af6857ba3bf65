/* SASL server mechanisms PLAIN, LOGIN and SCRAM-SHA-256 (see sasl.h).
 *
 * Each exchange is a struct sasl_server holding an explicit state; every entry
 * point first checks that the state expects that call and otherwise ends the
 * exchange with SASL_MALFORMED, so a confused caller can never walk a machine
 * into SASL_SUCCESS. Every terminal result (SUCCESS, FAIL, MALFORMED) moves to
 * ST_DONE and wipes the secrets; the user name stays readable for logging.
 *
 * Client messages are parsed in place with explicit bounds: user names up to
 * SASL_USER_MAX bytes, passwords up to SASL_PASSWORD_MAX, SCRAM messages up
 * to SCRAM_MSG_MAX, so the AuthMessage of RFC 5802 §3 always fits a fixed
 * buffer. Syntax errors give SASL_MALFORMED; well-formed messages that do not
 * authenticate (wrong proof, foreign authzid, channel binding) give SASL_FAIL.
 *
 * SCRAM for unknown users (RFC 5802 §5.1 allows the server to make up values):
 * the salt is HMAC-SHA-256 of the user name under a key drawn once per
 * process, so repeated attempts for the same unknown name see the same salt
 * like a real account would, and the keys are random, so the proof fails. */
#include "proto/sasl/sasl.h"

#include "proto/text/utf8.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Largest SCRAM client message accepted: a user name of SASL_USER_MAX bytes
 * with every byte escaped ("=2C") is 960 bytes, plus nonce and extensions. */
#define SCRAM_MSG_MAX 2048
/* Longest client nonce; keeps the server-first message within
 * SASL_CHALLENGE_MAX whatever salt length the directory stores. */
#define SCRAM_CNONCE_MAX 256
/* Random bytes in the server nonce; 24 bytes give 32 base64 characters. */
#define SCRAM_SNONCE_BYTES 24
#define SCRAM_SNONCE_MAX 64
/* Made-up values for users without a verifier. */
#define SCRAM_FAKE_SALT_LEN 16
#define SCRAM_FAKE_ITERATIONS 4096

enum sasl_state {
    ST_START,          /* nothing received yet */
    ST_PLAIN_WAIT,     /* PLAIN: sent the empty challenge, waiting for the message */
    ST_LOGIN_USER,     /* LOGIN: sent "Username:" */
    ST_LOGIN_PASS,     /* LOGIN: sent "Password:" */
    ST_CHECK,          /* PLAIN/LOGIN: waiting for sasl_server_password_result() */
    ST_SCRAM_FIRST,    /* SCRAM: sent the empty challenge, waiting for client-first */
    ST_SCRAM_VERIFIER, /* SCRAM: waiting for sasl_server_set_verifier() */
    ST_SCRAM_FINAL,    /* SCRAM: sent server-first, waiting for client-final */
    ST_SCRAM_END,      /* SCRAM: sent server-final, waiting for the empty message */
    ST_DONE,           /* exchange over */
};

struct sasl_server {
    enum sasl_mech mech;
    enum sasl_state state;
    char user[SASL_USER_MAX + 1];
    char password[SASL_PASSWORD_MAX + 1];

    /* SCRAM */
    char gs2_header[SCRAM_MSG_MAX + 1];
    size_t gs2_header_len;
    char client_first_bare[SCRAM_MSG_MAX + 1];
    size_t client_first_bare_len;
    char server_first[SASL_CHALLENGE_MAX];
    size_t server_first_len;
    /* client nonce followed by server nonce */
    char nonce[SCRAM_CNONCE_MAX + SCRAM_SNONCE_MAX + 1];
    bool found;
    unsigned char stored_key[SASL_SCRAM_KEY_LEN];
    unsigned char server_key[SASL_SCRAM_KEY_LEN];
    char test_nonce[SCRAM_SNONCE_MAX + 1];
};

/* ---- mechanisms ----------------------------------------------------------------------------- */

static const char *const mech_names[] = {
    [SASL_MECH_PLAIN] = "PLAIN",
    [SASL_MECH_LOGIN] = "LOGIN",
    [SASL_MECH_SCRAM_SHA_256] = "SCRAM-SHA-256",
};

static bool mech_valid(enum sasl_mech mech)
{
    return mech == SASL_MECH_PLAIN || mech == SASL_MECH_LOGIN || mech == SASL_MECH_SCRAM_SHA_256;
}

int sasl_mech_parse(const char *name, enum sasl_mech *mech_r)
{
    if (name == NULL)
        return -1;
    /* RFC 4422 §3.1: mechanism names are matched case-insensitively. */
    for (int m = SASL_MECH_PLAIN; m <= SASL_MECH_SCRAM_SHA_256; m++) {
        if (strcasecmp(name, mech_names[m]) == 0) {
            if (mech_r)
                *mech_r = (enum sasl_mech)m;
            return 0;
        }
    }
    return -1;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
    return mech_valid(mech) ? mech_names[mech] : NULL;
}

bool sasl_mech_plaintext(enum sasl_mech mech)
{
    return mech == SASL_MECH_PLAIN || mech == SASL_MECH_LOGIN;
}

/* ---- base64 --------------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long sasl_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    /* RFC 4648 §3.2: padding is required, so the length is a multiple of 4. */
    if (inlen % 4 != 0 || (in == NULL && inlen > 0))
        return -1;
    if (inlen == 0)
        return 0;
    size_t pad = 0;
    if (in[inlen - 1] == '=')
        pad = in[inlen - 2] == '=' ? 2 : 1;
    size_t declen = inlen / 4 * 3 - pad;
    if (declen > outlen || declen > (size_t)LONG_MAX || out == NULL)
        return -1;

    size_t o = 0;
    for (size_t i = 0; i < inlen; i += 4) {
        bool last = i + 4 == inlen;
        size_t data = last ? 4 - pad : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = 0;
            if (j < data) {
                d = b64_value((unsigned char)in[i + j]);
                if (d < 0)
                    return -1; /* '=' too early, whitespace, foreign characters */
            }
            v = v << 6 | (uint32_t)d;
        }
        /* RFC 4648 §3.5: the bits below the last encoded byte must be zero,
         * otherwise several strings would decode to the same bytes. */
        if ((pad == 1 && last && (v & 0xff) != 0) || (pad == 2 && last && (v & 0xffff) != 0))
            return -1;
        size_t bytes = data - 1;
        out[o++] = (unsigned char)(v >> 16);
        if (bytes > 1)
            out[o++] = (unsigned char)(v >> 8);
        if (bytes > 2)
            out[o++] = (unsigned char)v;
    }
    return (long)o;
}

long sasl_b64_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen)
{
    if ((in == NULL && inlen > 0) || out == NULL || inlen > (SIZE_MAX / 4 - 1) * 3 ||
        inlen > (size_t)LONG_MAX / 2)
        return -1;
    size_t need = (inlen + 2) / 3 * 4;
    if (need + 1 > outlen)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < inlen; i += 3) {
        size_t n = inlen - i < 3 ? inlen - i : 3;
        uint32_t v = (uint32_t)in[i] << 16;
        if (n > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            v |= in[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = n > 1 ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = n > 2 ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return (long)o;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

struct sasl_server *sasl_server_new(enum sasl_mech mech)
{
    if (!mech_valid(mech))
        return NULL;
    struct sasl_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->mech = mech;
    s->state = ST_START;
    return s;
}

static void wipe_secrets(struct sasl_server *s)
{
    OPENSSL_cleanse(s->password, sizeof(s->password));
    OPENSSL_cleanse(s->stored_key, sizeof(s->stored_key));
    OPENSSL_cleanse(s->server_key, sizeof(s->server_key));
}

void sasl_server_free(struct sasl_server **s)
{
    if (s == NULL || *s == NULL)
        return;
    OPENSSL_cleanse(*s, sizeof(**s));
    free(*s);
    *s = NULL;
}

/* Ends the exchange with result. */
static enum sasl_result finish(struct sasl_server *s, enum sasl_result result)
{
    wipe_secrets(s);
    s->state = ST_DONE;
    return result;
}

const char *sasl_server_user(const struct sasl_server *s)
{
    return s ? s->user : "";
}

const char *sasl_server_password(const struct sasl_server *s)
{
    return s ? s->password : "";
}

void sasl_server_set_test_nonce(struct sasl_server *s, const char *nonce)
{
    if (s == NULL || nonce == NULL)
        return;
    size_t n = strnlen(nonce, SCRAM_SNONCE_MAX + 1);
    if (n == 0 || n > SCRAM_SNONCE_MAX)
        return;
    for (size_t i = 0; i < n; i++) {
        if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',')
            return;
    }
    memcpy(s->test_nonce, nonce, n + 1);
}

/* ---- shared checks -------------------------------------------------------------------------- */

/* An authentication identity: 1..SASL_USER_MAX bytes of UTF-8 without control
 * characters (RFC 4013 §2.3 prohibits them; they would also end up in logs). */
static bool user_ok(const char *p, size_t n)
{
    return n > 0 && n <= SASL_USER_MAX && utf8_check(p, n, UTF8_NO_C0);
}

static void set_user(struct sasl_server *s, const char *p, size_t n)
{
    memcpy(s->user, p, n);
    s->user[n] = '\0';
}

/* A password: 1..SASL_PASSWORD_MAX bytes without NUL. Not checked for UTF-8:
 * a client sending legacy 8-bit bytes simply fails the password check. */
static bool password_ok(const unsigned char *p, size_t n)
{
    return n > 0 && n <= SASL_PASSWORD_MAX && memchr(p, '\0', n) == NULL;
}

/* ---- PLAIN (RFC 4616) ----------------------------------------------------------------------- */

static enum sasl_result plain_message(struct sasl_server *s, const unsigned char *data, size_t len)
{
    /* RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd */
    const unsigned char *nul1 = len ? memchr(data, '\0', len) : NULL;
    if (nul1 == NULL)
        return finish(s, SASL_MALFORMED);
    const unsigned char *authcid = nul1 + 1;
    size_t rest = len - (size_t)(authcid - data);
    const unsigned char *nul2 = rest ? memchr(authcid, '\0', rest) : NULL;
    if (nul2 == NULL)
        return finish(s, SASL_MALFORMED);
    const unsigned char *passwd = nul2 + 1;
    size_t authzid_len = (size_t)(nul1 - data);
    size_t authcid_len = (size_t)(nul2 - authcid);
    size_t passwd_len = len - (size_t)(passwd - data);

    /* a third NUL would sit inside the password, which SAFE excludes */
    if (!password_ok(passwd, passwd_len))
        return finish(s, SASL_MALFORMED);
    if (!user_ok((const char *)authcid, authcid_len))
        return finish(s, SASL_MALFORMED);
    if (authzid_len > 0 && !user_ok((const char *)data, authzid_len))
        return finish(s, SASL_MALFORMED);

    set_user(s, (const char *)authcid, authcid_len);
    /* No proxy authorisation: an authzid must name the authcid itself. */
    if (authzid_len > 0 && (authzid_len != authcid_len || memcmp(data, authcid, authcid_len) != 0))
        return finish(s, SASL_FAIL);

    memcpy(s->password, passwd, passwd_len);
    s->password[passwd_len] = '\0';
    s->state = ST_CHECK;
    return SASL_CHECK_PASSWORD;
}

/* ---- LOGIN (draft-murchison-sasl-login) ----------------------------------------------------- */

static enum sasl_result send_text(const char *text, unsigned char *challenge_r,
                                  size_t *challenge_len_r)
{
    size_t n = strlen(text);
    memcpy(challenge_r, text, n);
    *challenge_len_r = n;
    return SASL_CONTINUE;
}

static enum sasl_result login_user(struct sasl_server *s, const unsigned char *data, size_t len,
                                   unsigned char *challenge_r, size_t *challenge_len_r)
{
    if (!user_ok((const char *)data, len))
        return finish(s, SASL_MALFORMED);
    set_user(s, (const char *)data, len);
    s->state = ST_LOGIN_PASS;
    return send_text("Password:", challenge_r, challenge_len_r);
}

static enum sasl_result login_password(struct sasl_server *s, const unsigned char *data, size_t len)
{
    if (!password_ok(data, len))
        return finish(s, SASL_MALFORMED);
    memcpy(s->password, data, len);
    s->password[len] = '\0';
    s->state = ST_CHECK;
    return SASL_CHECK_PASSWORD;
}

enum sasl_result sasl_server_password_result(struct sasl_server *s, bool ok)
{
    if (s == NULL)
        return SASL_MALFORMED;
    if (s->state != ST_CHECK)
        return finish(s, SASL_MALFORMED);
    return finish(s, ok ? SASL_SUCCESS : SASL_FAIL);
}

/* ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) ----------------------------------------------------- */

/* A cursor over one SCRAM message; attributes are separated by ',' and no
 * value may contain one (RFC 5802 §7), so splitting on ',' is exact. */
struct cursor {
    const char *p, *end;
};

/* Takes the next attribute "x=value" up to the next ',' or the end; the
 * cursor then stands after the ','. Returns 0 or -1 when the attribute is not
 * ALPHA "=" and something (values are 1*value-char, checked by the callers
 * that need it). */
static int next_attr(struct cursor *c, char *name_r, const char **val_r, size_t *vlen_r)
{
    if (c->p >= c->end)
        return -1;
    const char *comma = memchr(c->p, ',', (size_t)(c->end - c->p));
    const char *stop = comma ? comma : c->end;
    if (stop - c->p < 2 || c->p[1] != '=')
        return -1;
    char a = c->p[0];
    if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')))
        return -1;
    *name_r = a;
    *val_r = c->p + 2;
    *vlen_r = (size_t)(stop - c->p - 2);
    c->p = comma ? comma + 1 : c->end;
    /* a trailing ',' promises another attribute */
    if (comma && c->p == c->end)
        return -1;
    return 0;
}

/* saslname (RFC 5802 §7): "=2C" stands for ',' and "=3D" for '='; any other
 * '=' is an error. ABNF strings are case-insensitive (RFC 5234 §2.3), so
 * "=2c" is accepted too. Writes at most outmax bytes plus a NUL. */
static int saslname_decode(const char *v, size_t n, char *out, size_t outmax, size_t *len_r)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (ch == '=') {
            if (n - i < 3)
                return -1;
            if (v[i + 1] == '2' && (v[i + 2] == 'C' || v[i + 2] == 'c'))
                ch = ',';
            else if (v[i + 1] == '3' && (v[i + 2] == 'D' || v[i + 2] == 'd'))
                ch = '=';
            else
                return -1;
            i += 2;
        }
        if (o >= outmax)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    *len_r = o;
    return 0;
}

/* c-nonce: 1*printable, printable = %x21-2B / %x2D-7E (RFC 5802 §7). */
static bool nonce_ok(const char *v, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ',')
            return false;
    }
    return true;
}

static enum sasl_result scram_client_first(struct sasl_server *s, const unsigned char *data,
                                           size_t len)
{
    /* The whole message is UTF-8 (RFC 5802 §5.1) and value-char excludes NUL. */
    if (len == 0 || len > SCRAM_MSG_MAX || memchr(data, '\0', len) != NULL ||
        !utf8_check((const char *)data, len, 0))
        return finish(s, SASL_MALFORMED);
    struct cursor c = {(const char *)data, (const char *)data + len};

    /* gs2-cbind-flag: "p=" asks for channel binding, which is not offered
     * (no -PLUS mechanism is advertised), so the exchange fails (RFC 5802
     * §6). "y" means the client could bind but thinks the server cannot,
     * which is true here, so it is as good as "n". */
    if (c.end - c.p >= 2 && c.p[0] == 'p' && c.p[1] == '=')
        return finish(s, SASL_FAIL);
    if (c.end - c.p < 2 || (c.p[0] != 'n' && c.p[0] != 'y') || c.p[1] != ',')
        return finish(s, SASL_MALFORMED);
    c.p += 2;

    /* [ authzid ] "," */
    char authzid[SASL_USER_MAX + 1];
    size_t authzid_len = 0;
    if (c.p < c.end && c.p[0] == 'a') {
        const char *v;
        size_t vl;
        char name;
        if (next_attr(&c, &name, &v, &vl) != 0 || vl == 0 ||
            saslname_decode(v, vl, authzid, SASL_USER_MAX, &authzid_len) != 0 ||
            !user_ok(authzid, authzid_len))
            return finish(s, SASL_MALFORMED);
        /* next_attr consumed the ',' that closes the gs2 header */
    } else {
        if (c.p >= c.end || c.p[0] != ',')
            return finish(s, SASL_MALFORMED);
        c.p++;
    }
    s->gs2_header_len = (size_t)(c.p - (const char *)data);
    memcpy(s->gs2_header, data, s->gs2_header_len);
    s->gs2_header[s->gs2_header_len] = '\0';
    const char *bare = c.p;

    /* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions].
     * RFC 5802 §5.1: "m" is reserved for mandatory extensions this server
     * cannot know, so the client asks for something unsupported. */
    const char *v;
    size_t vl;
    char name;
    if (next_attr(&c, &name, &v, &vl) != 0 || name != 'n' || vl == 0)
        return finish(s, SASL_MALFORMED);
    char user[SASL_USER_MAX + 1];
    size_t user_len;
    if (saslname_decode(v, vl, user, SASL_USER_MAX, &user_len) != 0 || !user_ok(user, user_len))
        return finish(s, SASL_MALFORMED);
    if (next_attr(&c, &name, &v, &vl) != 0 || name != 'r' || !nonce_ok(v, vl, SCRAM_CNONCE_MAX))
        return finish(s, SASL_MALFORMED);
    memcpy(s->nonce, v, vl);
    s->nonce[vl] = '\0';
    while (c.p < c.end) { /* extensions: unknown optional ones are ignored */
        const char *ev;
        size_t evl;
        if (next_attr(&c, &name, &ev, &evl) != 0 || evl == 0)
            return finish(s, SASL_MALFORMED);
    }

    s->client_first_bare_len = (size_t)(c.end - bare);
    memcpy(s->client_first_bare, bare, s->client_first_bare_len);
    s->client_first_bare[s->client_first_bare_len] = '\0';
    set_user(s, user, user_len);
    /* No proxy authorisation (RFC 5802 §5.1 lets the server refuse it). */
    if (authzid_len > 0 && (authzid_len != user_len || memcmp(authzid, user, user_len) != 0))
        return finish(s, SASL_FAIL);
    s->state = ST_SCRAM_VERIFIER;
    return SASL_NEED_VERIFIER;
}

/* Per-process key for the salts of unknown users. */
static unsigned char fake_salt_key[32];
static bool fake_salt_key_ok;
static pthread_once_t fake_salt_once = PTHREAD_ONCE_INIT;

static void fake_salt_key_init(void)
{
    fake_salt_key_ok = RAND_bytes(fake_salt_key, sizeof(fake_salt_key)) == 1;
}

static int fake_verifier(struct sasl_server *s, unsigned char *salt_r, size_t *saltlen_r)
{
    if (pthread_once(&fake_salt_once, fake_salt_key_init) != 0 || !fake_salt_key_ok)
        return -1;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), fake_salt_key, sizeof(fake_salt_key), (const unsigned char *)s->user,
             strlen(s->user), mac, &maclen) == NULL ||
        maclen < SCRAM_FAKE_SALT_LEN)
        return -1;
    memcpy(salt_r, mac, SCRAM_FAKE_SALT_LEN);
    *saltlen_r = SCRAM_FAKE_SALT_LEN;
    /* random keys: no password can produce a proof for them */
    if (RAND_bytes(s->stored_key, sizeof(s->stored_key)) != 1 ||
        RAND_bytes(s->server_key, sizeof(s->server_key)) != 1)
        return -1;
    return 0;
}

enum sasl_result sasl_server_set_verifier(struct sasl_server *s, bool found, int iterations,
                                          const unsigned char *salt, size_t saltlen,
                                          const unsigned char stored_key[SASL_SCRAM_KEY_LEN],
                                          const unsigned char server_key[SASL_SCRAM_KEY_LEN],
                                          unsigned char *challenge_r, size_t *challenge_len_r)
{
    if (s == NULL)
        return SASL_MALFORMED;
    if (s->state != ST_SCRAM_VERIFIER || challenge_r == NULL || challenge_len_r == NULL)
        return finish(s, SASL_MALFORMED);
    *challenge_len_r = 0;

    if (found && (iterations < 1 || salt == NULL || saltlen == 0 || saltlen > SASL_SCRAM_SALT_MAX ||
                  stored_key == NULL || server_key == NULL))
        found = false;
    unsigned char fake_salt[SCRAM_FAKE_SALT_LEN];
    if (found) {
        memcpy(s->stored_key, stored_key, SASL_SCRAM_KEY_LEN);
        memcpy(s->server_key, server_key, SASL_SCRAM_KEY_LEN);
    } else {
        if (fake_verifier(s, fake_salt, &saltlen) != 0)
            return finish(s, SASL_FAIL);
        salt = fake_salt;
        iterations = SCRAM_FAKE_ITERATIONS;
    }
    s->found = found;

    /* Server nonce: random bytes in base64, which is printable without ','. */
    char snonce[SCRAM_SNONCE_MAX + 1];
    if (s->test_nonce[0] != '\0') {
        memcpy(snonce, s->test_nonce, sizeof(snonce));
    } else {
        unsigned char rnd[SCRAM_SNONCE_BYTES];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
            sasl_b64_encode(rnd, sizeof(rnd), snonce, sizeof(snonce)) < 0)
            return finish(s, SASL_FAIL);
    }
    size_t cl = strlen(s->nonce);
    memcpy(s->nonce + cl, snonce, strlen(snonce) + 1);

    char salt64[(SASL_SCRAM_SALT_MAX + 2) / 3 * 4 + 1];
    if (sasl_b64_encode(salt, saltlen, salt64, sizeof(salt64)) < 0)
        return finish(s, SASL_FAIL);
    /* RFC 5802 §5.1: server-first-message = nonce "," salt "," iteration-count */
    int n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->nonce, salt64,
                     iterations);
    if (n < 0 || (size_t)n >= sizeof(s->server_first))
        return finish(s, SASL_FAIL); /* cannot happen with the bounds above */
    s->server_first_len = (size_t)n;
    memcpy(challenge_r, s->server_first, s->server_first_len);
    *challenge_len_r = s->server_first_len;
    s->state = ST_SCRAM_FINAL;
    return SASL_CONTINUE;
}

/* HMAC-SHA-256 of AuthMessage = client-first-message-bare "," server-first-message ","
 * client-final-message-without-proof (RFC 5802 §3). */
static int auth_message_hmac(const struct sasl_server *s, const unsigned char key[32],
                             const char *final_wo_proof, size_t final_len, unsigned char out[32])
{
    char msg[SCRAM_MSG_MAX + 1 + SASL_CHALLENGE_MAX + 1 + SCRAM_MSG_MAX];
    size_t n = 0;
    memcpy(msg + n, s->client_first_bare, s->client_first_bare_len);
    n += s->client_first_bare_len;
    msg[n++] = ',';
    memcpy(msg + n, s->server_first, s->server_first_len);
    n += s->server_first_len;
    msg[n++] = ',';
    memcpy(msg + n, final_wo_proof, final_len);
    n += final_len;
    unsigned int outlen = 0;
    if (HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg, n, out, &outlen) == NULL ||
        outlen != 32)
        return -1;
    return 0;
}

static enum sasl_result scram_client_final(struct sasl_server *s, const unsigned char *data,
                                           size_t len, unsigned char *challenge_r,
                                           size_t *challenge_len_r)
{
    if (len == 0 || len > SCRAM_MSG_MAX || memchr(data, '\0', len) != NULL ||
        !utf8_check((const char *)data, len, 0))
        return finish(s, SASL_MALFORMED);
    struct cursor c = {(const char *)data, (const char *)data + len};

    /* client-final-message = channel-binding "," nonce ["," extensions] "," proof */
    const char *cb, *nonce, *v = NULL, *proof64 = NULL;
    size_t cblen, noncelen, vl = 0, proof64len = 0;
    char name;
    if (next_attr(&c, &name, &cb, &cblen) != 0 || name != 'c')
        return finish(s, SASL_MALFORMED);
    unsigned char cbind[SCRAM_MSG_MAX];
    long cbind_len = sasl_b64_decode(cb, cblen, cbind, sizeof(cbind));
    if (cbind_len < 0)
        return finish(s, SASL_MALFORMED);
    if (next_attr(&c, &name, &nonce, &noncelen) != 0 || name != 'r' ||
        !nonce_ok(nonce, noncelen, sizeof(s->nonce) - 1))
        return finish(s, SASL_MALFORMED);
    const char *proof_attr = NULL;
    while (c.p < c.end) {
        const char *attr = c.p;
        if (next_attr(&c, &name, &v, &vl) != 0 || vl == 0)
            return finish(s, SASL_MALFORMED);
        if (name == 'p') {
            /* the proof is the last attribute */
            if (c.p != c.end)
                return finish(s, SASL_MALFORMED);
            proof_attr = attr;
            proof64 = v;
            proof64len = vl;
        }
    }
    if (proof_attr == NULL)
        return finish(s, SASL_MALFORMED);
    unsigned char proof[SASL_SCRAM_KEY_LEN];
    if (sasl_b64_decode(proof64, proof64len, proof, sizeof(proof)) != SASL_SCRAM_KEY_LEN)
        return finish(s, SASL_MALFORMED);

    /* RFC 5802 §5.1: without channel binding, c= carries the gs2 header
     * exactly as the client sent it; r= repeats the combined nonce. */
    if ((size_t)cbind_len != s->gs2_header_len ||
        memcmp(cbind, s->gs2_header, s->gs2_header_len) != 0)
        return finish(s, SASL_FAIL);
    if (noncelen != strlen(s->nonce) || memcmp(nonce, s->nonce, noncelen) != 0)
        return finish(s, SASL_FAIL);

    /* RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage);
     * authenticated when H(ClientKey) equals StoredKey. */
    size_t wo_proof_len = (size_t)(proof_attr - 1 - (const char *)data);
    unsigned char sig[SASL_SCRAM_KEY_LEN], client_key[SASL_SCRAM_KEY_LEN];
    unsigned char hashed[EVP_MAX_MD_SIZE];
    unsigned int hashed_len = 0;
    enum sasl_result r = SASL_FAIL;
    if (auth_message_hmac(s, s->stored_key, (const char *)data, wo_proof_len, sig) != 0)
        goto out;
    for (size_t i = 0; i < SASL_SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    if (EVP_Digest(client_key, sizeof(client_key), hashed, &hashed_len, EVP_sha256(), NULL) != 1 ||
        hashed_len != SASL_SCRAM_KEY_LEN)
        goto out;
    /* constant time, and an unknown user fails even if the proof matched */
    if (CRYPTO_memcmp(hashed, s->stored_key, SASL_SCRAM_KEY_LEN) != 0 || !s->found)
        goto out;

    /* server-final-message = "v=" base64(HMAC(ServerKey, AuthMessage)) */
    if (auth_message_hmac(s, s->server_key, (const char *)data, wo_proof_len, sig) != 0)
        goto out;
    char sig64[(SASL_SCRAM_KEY_LEN + 2) / 3 * 4 + 1];
    if (sasl_b64_encode(sig, sizeof(sig), sig64, sizeof(sig64)) < 0)
        goto out;
    size_t n = strlen(sig64);
    memcpy(challenge_r, "v=", 2);
    memcpy(challenge_r + 2, sig64, n);
    *challenge_len_r = 2 + n;
    r = SASL_CONTINUE;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(hashed, sizeof(hashed));
    if (r != SASL_CONTINUE)
        return finish(s, r);
    /* the keys are no longer needed; only the empty closing message is left */
    wipe_secrets(s);
    s->state = ST_SCRAM_END;
    return r;
}

/* ---- the step ------------------------------------------------------------------------------- */

enum sasl_result sasl_server_step(struct sasl_server *s, const unsigned char *data, size_t len,
                                  bool has_data, unsigned char *challenge_r,
                                  size_t *challenge_len_r)
{
    if (s == NULL)
        return SASL_MALFORMED;
    if (challenge_r == NULL || challenge_len_r == NULL || (data == NULL && len > 0))
        return finish(s, SASL_MALFORMED);
    *challenge_len_r = 0;
    if (s->state != ST_START && !has_data)
        len = 0; /* a later response without data is an empty one */

    switch (s->state) {
    case ST_START:
        if (!has_data) {
            /* RFC 4422 §5: without an initial response the server sends an
             * empty challenge (PLAIN, SCRAM) or its first prompt (LOGIN). */
            if (s->mech == SASL_MECH_LOGIN) {
                s->state = ST_LOGIN_USER;
                return send_text("Username:", challenge_r, challenge_len_r);
            }
            s->state = s->mech == SASL_MECH_PLAIN ? ST_PLAIN_WAIT : ST_SCRAM_FIRST;
            return SASL_CONTINUE;
        }
        switch (s->mech) {
        case SASL_MECH_PLAIN:
            return plain_message(s, data, len);
        case SASL_MECH_LOGIN:
            return login_user(s, data, len, challenge_r, challenge_len_r);
        case SASL_MECH_SCRAM_SHA_256:
            return scram_client_first(s, data, len);
        }
        return finish(s, SASL_MALFORMED);
    case ST_PLAIN_WAIT:
        return plain_message(s, data, len);
    case ST_LOGIN_USER:
        return login_user(s, data, len, challenge_r, challenge_len_r);
    case ST_LOGIN_PASS:
        return login_password(s, data, len);
    case ST_SCRAM_FIRST:
        return scram_client_first(s, data, len);
    case ST_SCRAM_FINAL:
        return scram_client_final(s, data, len, challenge_r, challenge_len_r);
    case ST_SCRAM_END:
        /* RFC 5802 §5: after server-final the client only acknowledges. */
        return finish(s, len == 0 ? SASL_SUCCESS : SASL_MALFORMED);
    case ST_CHECK:
    case ST_SCRAM_VERIFIER:
    case ST_DONE:
        break;
    }
    return finish(s, SASL_MALFORMED);
}
