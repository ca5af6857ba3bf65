/* Read-only queries for the IMAP service (see imapstate.h). */
#include "storage/imapstate.h"

#include <stdio.h>
#include <stdlib.h>

#include "storage/db.h"

int imapstate_deleted_bytes(PGconn *c, long long folder_id, unsigned long long *bytes_r, char *err,
                            size_t errlen)
{
    char fol[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    const char *p[] = {fol};
    PGresult *r = PQexecParams(c,
                               "SELECT coalesce(sum(size), 0) FROM messages"
                               " WHERE folder_id = $1 AND flags & 8 <> 0",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot read deleted storage");
        PQclear(r);
        return -1;
    }
    *bytes_r = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}
