/* Node logging: one line per event, per-service levels, to stderr and/or daily and
 * size-rotated files in a directory, with retention in days.
 *
 * Every line has the form
 *   2026-11-21T05:34:43.123Z node1 imap [s=1a2b] [c=192.0.2.1] message
 * (UTC time with milliseconds, node id, service, session id, client address, message).
 * Every function here may be called from any thread at any time, including while another
 * thread reconfigures. */
#ifndef FLOE_NODE_LOG_H
#define FLOE_NODE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The levels of the product Floe replaces. A service logs the messages whose level is at
 * most its own; LOG_NONE as a service level silences everything but errors and warnings.
 * LOG_NONE is not a message level: log_write() at LOG_NONE writes nothing. */
enum log_level { LOG_NONE = 0, LOG_SUMMARY = 1, LOG_DEBUG = 2, LOG_EXTENDED = 3 };

/* Longest line written, newline included; longer lines end in "...\n". */
#define LOG_LINE_MAX 8192
/* Services with a slot of their own (level, file). Lines of further services, and of names
 * that are not valid service names, go to the shared "_other" file at the default level. */
#define LOG_SERVICES_MAX 64
/* A service name is 1..LOG_SERVICE_NAME_MAX of [A-Za-z0-9_-], starting with a letter or digit. */
#define LOG_SERVICE_NAME_MAX 32
/* A node id is 1..LOG_NODE_ID_MAX of [A-Za-z0-9._-]. */
#define LOG_NODE_ID_MAX 64
/* Session ids and client addresses longer than this are cut (ending in "..."). */
#define LOG_FIELD_MAX 64
/* Highest -NN file index of one service and day; once reached, that file keeps growing. */
#define LOG_FILE_INDEX_MAX 9999

struct log_config {
    const char *node_id; /* copied; see LOG_NODE_ID_MAX */
    bool to_stderr;
    /* NULL or "": no files. Otherwise files <dir>/<service>-<node>-YYYYMMDD-NN.log (UTC date,
     * NN from 00), created with missing parent directories. */
    const char *dir;
    /* 0: no size rotation; else a line that would take the current file past this size goes
     * to the next -NN file (a single longer line still goes to an empty file). */
    size_t rotate_bytes;
    /* 0: keep forever; else delete this node's log files in dir whose date is more than N days
     * before today (checked at configuration and when a new file is opened). Only regular
     * files named exactly <service>-<this node>-YYYYMMDD-NN.log (or _other-...) are ever
     * deleted. */
    int retention_days;
    enum log_level default_level; /* level of services not set explicitly */
};

/* (Re)configures logging: closes the open files, applies cfg and runs the retention sweep.
 * Explicit service levels are cleared (every service follows cfg->default_level until
 * log_set_level() is called again), so a reload yields the same state as a fresh start.
 * Until the first call, lines go to stderr at LOG_SUMMARY with node id "-".
 * Returns 0, or -1 (message to stderr) when cfg is invalid or dir cannot be created or opened;
 * the previous configuration then stays in force. */
int log_configure(const struct log_config *cfg);

/* Sets one service's level (service names are short words: "imap", "smtp", "daytime",
 * "system"). An invalid name or level, or a full service table, is reported on stderr and
 * changes nothing. */
void log_set_level(const char *service, enum log_level level);

/* Returns the service's level: its explicit one, else the default level. */
enum log_level log_get_level(const char *service);

/* Returns whether log_write(service, level, ...) would write: level is LOG_SUMMARY..LOG_EXTENDED
 * and at most the service's level. Cheap (no lock): callers may test it before building
 * expensive arguments. */
bool log_enabled(const char *service, enum log_level level);

/* Parses "none" | "summary" | "debug" | "extended" (case-insensitive), or "0".."3", into
 * *level_r. Returns 0, or -1 (and *level_r unchanged) for anything else, NULL included. */
int log_level_parse(const char *s, enum log_level *level_r);

/* Returns the level's lower-case name ("none" .. "extended"), or "?" when out of range. */
const char *log_level_name(enum log_level level);

/* Writes one line if log_enabled(service, level). session and client may be NULL or ""
 * (printed as "-"); in them space, brackets and bytes outside printable ASCII are written as
 * \xNN, so each stays one field. An invalid service name is printed as "-". Control characters in
 * the message are escaped (CR and LF as the text "\r" and "\n", others as \xNN) so one call is
 * always exactly one line; a line is cut at LOG_LINE_MAX bytes with "..." appended, never
 * inside an escape or a UTF-8 sequence. */
void log_write(const char *service, enum log_level level, const char *session, const char *client,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void log_vwrite(const char *service, enum log_level level, const char *session, const char *client,
                const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* Write one line whatever the service's level (LOG_NONE included), the message prefixed with
 * "error: " / "warning: ". Otherwise as log_write(). */
void log_error(const char *service, const char *session, const char *client, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_warn(const char *service, const char *session, const char *client, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Replaces the clock used for timestamps, day changes and retention, for tests. NULL restores
 * clock_gettime(CLOCK_REALTIME). */
void log_set_clock(void (*now_fn)(struct timespec *ts_r));

/* Closes the files (end of process). Lines written afterwards go to stderr only, if enabled,
 * until log_configure() is called again. */
void log_shutdown(void);

#endif
