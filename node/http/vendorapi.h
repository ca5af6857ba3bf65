/* The vendor-compatible admin XML API on the web service (docs/VENDORAPI.md):
 * POST or PUT /icewarpapi, /icewarpapi/ and /icewarpapi/<anything>, with the
 * XML envelope of proto/vendorapi/request.h in the body and the answer (or
 * the error) in an XML document with status 200.
 *
 * vendorapi.c owns the transport, the sessions (storage/apisession.h) and the
 * logins; vendorapi_dir.c the directory commands. A request is parsed on the
 * I/O thread and runs as one job on a worker: session check, command, and the
 * whole response document. */
#ifndef FLOE_NODE_HTTP_VENDORAPI_H
#define FLOE_NODE_HTTP_VENDORAPI_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "proto/vendorapi/request.h"
#include "proto/vendorapi/response.h"
#include "storage/apisession.h"
#include "storage/directory.h"

/* Registers the routes on the "web" service and makes this node's RSA key
 * pair. Called once from web_http_init() at start-up. */
void vendorapi_http_init(void);

/* ---- shared by vendorapi.c and vendorapi_dir.c ---- */

/* The version reported as c_version: archiving products ask for "API 10.4 or
 * newer" (issue 8); this is the vendor release whose API reference we follow. */
#define VAPI_COMPAT_VERSION "13.0.3"

/* One request on a worker. */
struct vapi_call {
    PGconn *db;
    const struct vapi_request *req;
    struct vapi_out *out;
    /* the session's account and its level (VAPI_ADMIN_*), once the sid checked out */
    const struct dir_account *who;
    int level;
    /* set by a command: the error uid to answer instead of the result */
    const char *error;
    /* the sid the answer carries: the request's, or a new one after authenticate */
    char sid[APISESSION_ID_SIZE > VAPI_SID_MAX + 1 ? APISESSION_ID_SIZE : VAPI_SID_MAX + 1];
    char log[256]; /* why a command failed, for the log */
};

/* Starts the result document (<iq type="result" ...><query ...>); the
 * dispatcher ends it. */
void vapi_call_begin(struct vapi_call *call);

/* The directory commands. Each writes its <result> after vapi_call_begin(),
 * or sets call->error. Returns 0, or -1 when the database failed (the
 * request is then answered 503: clients retry on transport errors). */
int vapi_cmd_getdomainsinfolist(struct vapi_call *call);
int vapi_cmd_getaccountsinfolist(struct vapi_call *call);
int vapi_cmd_getaccountproperties(struct vapi_call *call);
int vapi_cmd_getmyproperties(struct vapi_call *call);
int vapi_cmd_getaccountmemberinfolist(struct vapi_call *call);
int vapi_cmd_getdomainproperties(struct vapi_call *call);
int vapi_cmd_getserverproperties(struct vapi_call *call);

#endif
