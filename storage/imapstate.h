/* Small read-only queries the IMAP service needs beyond storage/mailstore.h.
 *
 * Conventions as in mailstore.h: blocking calls on the caller's connection, 0 on success, -1
 * with the reason in err. */
#ifndef FLOE_STORAGE_IMAPSTATE_H
#define FLOE_STORAGE_IMAPSTATE_H

#include <libpq-fe.h>
#include <stddef.h>

/* Bytes of the folder's messages flagged \Deleted (RFC 9208 §4.2.3 STATUS DELETED-STORAGE).
 * Reads the folder's rows through the messages_folder_uid index; STATUS asks it only when
 * the client names the item. */
int imapstate_deleted_bytes(PGconn *c, long long folder_id, unsigned long long *bytes_r, char *err,
                            size_t errlen);

#endif
