/* HTTP Basic authentication against the directory (RFC 7617), for every HTTP
 * service. The password check runs on a worker (it is a slow hash by design);
 * the request is deferred meanwhile. A missing header, a malformed one, an
 * unknown account, a wrong password and a disabled account all get the same
 * 401, so the answer reveals nothing about which addresses exist. */
#ifndef FLOE_NODE_HTTP_AUTH_H
#define FLOE_NODE_HTTP_AUTH_H

#include "node/http/http.h"
#include "storage/directory.h"

/* Called on the connection's thread once the credentials are known good. */
typedef void (*http_authed)(struct http_exchange *x, const struct dir_account *a, void *arg);

/* Checks the request's Basic credentials; on success calls then(x, account, arg),
 * otherwise answers 401 with a WWW-Authenticate challenge for realm. arg is
 * freed with free() when the answer is 401 or 503 (then is not called). */
void http_auth_basic(struct http_exchange *x, const char *realm, http_authed then, void *arg);

/* Decodes a "Basic ..." header value into user and password (both NUL-terminated,
 * at most 320 / 1024 bytes). 0 ok, -1 malformed. */
int http_basic_decode(const char *header, char *user, size_t userlen, char *pass, size_t passlen);

#endif
