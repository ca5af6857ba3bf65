/* Node logging: per-service levels, line formatting, stderr and rotated files.
 *
 * State is one table of services (LOG_SERVICES_MAX slots plus the shared "_other" slot)
 * and the current configuration, guarded by one mutex. A slot's name is written once,
 * before the slot is published by a release store of the slot count, and never changes;
 * levels are atomics. So log_enabled() and log_get_level() read the table without the lock,
 * and a disabled debug line costs a short scan and no lock.
 *
 * A line is formatted with vsnprintf() outside the lock into a bounded buffer. Under the
 * lock it takes its timestamp (so lines of one file are in time order and the file's day
 * is the day of its lines), is escaped into one LOG_LINE_MAX buffer and written with one
 * write(2) to stderr and/or the service's file. Holding the lock across the write keeps
 * lines whole whatever the destination (O_APPEND only makes regular files safe).
 *
 * Files are <dir>/<service>-<node>-YYYYMMDD-NN.log, opened relative to a descriptor of the
 * directory taken at configuration. A service's file changes when the UTC date of a line
 * differs from the file's date, or when the line would take the file past rotate_bytes.
 * On the first file of a day the directory is scanned for that day's highest -NN, so a
 * restarted node continues where it stopped instead of overwriting -00.
 *
 * Retention deletes regular files whose name parses exactly as the pattern above with this
 * node's id, dated more than retention_days before today. It runs at configuration and when
 * a new file is opened, at most once per UTC day: a file's age by date only changes at
 * midnight, so a second sweep on the same day could not find anything new. */
#include "node/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_DIR_MAX 4096
#define LOG_FILE_NAME_MAX 160
#define LOG_OTHER_NAME "_other"
#define LOG_RETRY_SECONDS 60    /* after a file could not be opened or written */
#define LOG_STDERR_WAIT_MS 1000 /* longest wait on a non-blocking stderr that is full */

struct log_service {
    char name[LOG_SERVICE_NAME_MAX + 1]; /* immutable once published */
    _Atomic int level;                   /* -1: follows the default level */
    /* the rest under log_mutex */
    bool open;
    int fd;
    int day;        /* YYYYMMDD of the open file */
    unsigned index; /* its -NN */
    uint64_t size;
    time_t retry_after; /* no file attempts before this time after a failure */
};

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct log_service log_services[LOG_SERVICES_MAX];
static _Atomic unsigned log_nservices;
static struct log_service log_other = {.name = LOG_OTHER_NAME, .level = -1};
static _Atomic int log_default_level = LOG_SUMMARY;

/* Configuration, under log_mutex. */
static struct {
    char node[LOG_NODE_ID_MAX + 1];
    bool to_stderr;
    bool have_dir;
    int dir_fd;
    char dir[LOG_DIR_MAX];
    uint64_t rotate_bytes;
    int retention_days;
    long swept_day; /* days since the epoch of the last retention sweep */
    void (*clock)(struct timespec *ts_r);
} log_cfg = {.node = "-", .to_stderr = true, .swept_day = LONG_MIN};

static const char *const log_level_names[] = {"none", "summary", "debug", "extended"};

/* ---- names ---- */

static bool log_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool log_is_alnum(char c)
{
    return log_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool log_service_name_valid_n(const char *s, size_t len)
{
    if (len == 0 || len > LOG_SERVICE_NAME_MAX || !log_is_alnum(s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!log_is_alnum(s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool log_service_name_valid(const char *s)
{
    return s != NULL && log_service_name_valid_n(s, strnlen(s, LOG_SERVICE_NAME_MAX + 1));
}

static bool log_node_id_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t len = strnlen(s, LOG_NODE_ID_MAX + 1);
    if (len == 0 || len > LOG_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!log_is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long log_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const long yoe = y - era * 400;
    const long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool log_date_valid(int y, int m, int d)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/* Parses a file name of the form <service>-<node>-YYYYMMDD-NN.log for the given node, NN being
 * 2 to 4 digits as written by log_file_name(). Returns whether it matches; on a match the
 * service is name[0 .. *svc_len_r). */
static bool log_file_name_parse(const char *name, const char *node, size_t *svc_len_r, int *ymd_r,
                                unsigned *index_r)
{
    size_t len = strnlen(name, LOG_FILE_NAME_MAX + 1);
    size_t nlen = strlen(node);
    if (len > LOG_FILE_NAME_MAX || len < 4 || memcmp(name + len - 4, ".log", 4) != 0)
        return false;

    size_t end = len - 4, p = end;
    while (p > 0 && end - p < 5 && log_is_digit(name[p - 1]))
        p--;
    size_t ndigits = end - p;
    if (ndigits < 2 || ndigits > 4 || (ndigits > 2 && name[p] == '0') || p == 0 ||
        name[p - 1] != '-')
        return false;
    unsigned index = 0;
    for (size_t i = p; i < end; i++)
        index = index * 10 + (unsigned)(name[i] - '0');

    /* "-YYYYMMDD" before "-NN" */
    if (p < 10)
        return false;
    size_t ds = p - 9;
    if (name[ds - 1] != '-')
        return false;
    int ymd = 0;
    for (size_t i = ds; i < ds + 8; i++) {
        if (!log_is_digit(name[i]))
            return false;
        ymd = ymd * 10 + (name[i] - '0');
    }
    if (!log_date_valid(ymd / 10000, ymd / 100 % 100, ymd % 100))
        return false;

    /* "<service>-<node>" before "-YYYYMMDD" */
    size_t node_end = ds - 1;
    if (node_end < nlen + 2)
        return false;
    size_t ns = node_end - nlen;
    if (memcmp(name + ns, node, nlen) != 0 || name[ns - 1] != '-')
        return false;
    size_t svc_len = ns - 1;
    bool other = svc_len == strlen(LOG_OTHER_NAME) && memcmp(name, LOG_OTHER_NAME, svc_len) == 0;
    if (!other && !log_service_name_valid_n(name, svc_len))
        return false;

    *svc_len_r = svc_len;
    *ymd_r = ymd;
    *index_r = index;
    return true;
}

static void log_file_name(char *buf, size_t size, const char *service, const char *node, int ymd,
                          unsigned index)
{
    snprintf(buf, size, "%s-%s-%08d-%02u.log", service, node, ymd, index);
}

/* ---- errors about logging itself (stderr, never through the log) ---- */

static void log_stderr_write(const char *buf, size_t len);

static void log_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_report(const char *fmt, ...)
{
    char buf[LOG_DIR_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(buf) - 1 ? (size_t)n : sizeof(buf) - 2;
    buf[len++] = '\n';
    log_stderr_write(buf, len);
}

static const char *log_strerror(int err, char *buf, size_t size)
{
    return strerror_r(err, buf, size); /* GNU variant: returns the message */
}

/* ---- service table ---- */

static struct log_service *log_service_find(const char *name)
{
    unsigned n = atomic_load_explicit(&log_nservices, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(log_services[i].name, name) == 0)
            return &log_services[i];
    return NULL;
}

/* Finds or adds a valid service name. NULL when the table is full. Needs log_mutex. */
static struct log_service *log_service_get_locked(const char *name)
{
    struct log_service *svc = log_service_find(name);
    if (svc != NULL)
        return svc;
    unsigned n = atomic_load_explicit(&log_nservices, memory_order_relaxed);
    if (n >= LOG_SERVICES_MAX)
        return NULL;
    svc = &log_services[n];
    memset(svc->name, 0, sizeof(svc->name));
    memcpy(svc->name, name, strlen(name));
    atomic_store_explicit(&svc->level, -1, memory_order_relaxed);
    svc->open = false;
    svc->fd = -1;
    svc->retry_after = 0;
    atomic_store_explicit(&log_nservices, n + 1, memory_order_release);
    return svc;
}

static void log_service_close(struct log_service *svc)
{
    if (svc->open) {
        /* nothing useful can be done when close fails on a log file */
        (void)close(svc->fd);
        svc->open = false;
        svc->fd = -1;
    }
    svc->retry_after = 0;
}

static void log_close_all_locked(void)
{
    unsigned n = atomic_load_explicit(&log_nservices, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        log_service_close(&log_services[i]);
    log_service_close(&log_other);
}

/* ---- levels ---- */

static bool log_level_valid(int level)
{
    return level >= LOG_NONE && level <= LOG_EXTENDED;
}

int log_level_parse(const char *s, enum log_level *level_r)
{
    if (s == NULL)
        return -1;
    for (int i = LOG_NONE; i <= LOG_EXTENDED; i++) {
        if (strcasecmp(s, log_level_names[i]) == 0 || (s[0] == '0' + i && s[1] == '\0')) {
            *level_r = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return log_level_valid((int)level) ? log_level_names[level] : "?";
}

enum log_level log_get_level(const char *service)
{
    const struct log_service *svc =
        log_service_name_valid(service) ? log_service_find(service) : NULL;
    int level = svc != NULL ? atomic_load_explicit(&svc->level, memory_order_relaxed) : -1;
    if (level < 0)
        level = atomic_load_explicit(&log_default_level, memory_order_relaxed);
    return (enum log_level)level;
}

bool log_enabled(const char *service, enum log_level level)
{
    return level >= LOG_SUMMARY && level <= LOG_EXTENDED && level <= log_get_level(service);
}

void log_set_level(const char *service, enum log_level level)
{
    if (!log_service_name_valid(service)) {
        log_report("log: level for an invalid service name ignored");
        return;
    }
    if (!log_level_valid((int)level)) {
        log_report("log: invalid level %d for %s ignored", (int)level, service);
        return;
    }
    pthread_mutex_lock(&log_mutex);
    struct log_service *svc = log_service_get_locked(service);
    if (svc != NULL)
        atomic_store_explicit(&svc->level, (int)level, memory_order_relaxed);
    pthread_mutex_unlock(&log_mutex);
    if (svc == NULL)
        log_report("log: more than %d services, level of %s ignored", LOG_SERVICES_MAX, service);
}

/* ---- clock ---- */

static void log_now_locked(struct timespec *ts)
{
    if (log_cfg.clock != NULL) {
        log_cfg.clock(ts);
    } else if (clock_gettime(CLOCK_REALTIME, ts) != 0) {
        ts->tv_sec = 0;
        ts->tv_nsec = 0;
    }
    if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
        ts->tv_nsec = 0;
}

void log_set_clock(void (*now_fn)(struct timespec *ts_r))
{
    pthread_mutex_lock(&log_mutex);
    log_cfg.clock = now_fn;
    pthread_mutex_unlock(&log_mutex);
}

/* ---- output ---- */

/* Writes all of buf to fd. Returns 0, or -1 with errno set. A full non-blocking descriptor
 * (libuv may make stderr non-blocking) is waited for, LOG_STDERR_WAIT_MS at most. */
static int log_write_fd(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int r = poll(&pfd, 1, LOG_STDERR_WAIT_MS);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                errno = r == 0 ? EAGAIN : errno;
                return -1;
            }
        } else {
            if (n == 0)
                errno = EIO;
            return -1;
        }
    }
    return 0;
}

static void log_stderr_write(const char *buf, size_t len)
{
    /* stderr is where failures would be reported: there is nowhere left to say this failed */
    (void)log_write_fd(STDERR_FILENO, buf, len);
}

/* Deletes this node's files dated more than retention_days before today. Needs log_mutex. */
static void log_retention_sweep_locked(long today)
{
    if (!log_cfg.have_dir || log_cfg.retention_days <= 0)
        return;
    log_cfg.swept_day = today;
    /* a fresh open file description: readdir position is not shared with dir_fd */
    int fd = openat(log_cfg.dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        char eb[128];
        log_report("log: cannot read %s for retention: %s", log_cfg.dir,
                   log_strerror(errno, eb, sizeof(eb)));
        if (fd >= 0)
            (void)close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t svc_len;
        int ymd;
        unsigned index;
        if (!log_file_name_parse(de->d_name, log_cfg.node, &svc_len, &ymd, &index))
            continue;
        long day = log_days_from_civil(ymd / 10000, ymd / 100 % 100, ymd % 100);
        if (today - day <= log_cfg.retention_days)
            continue;
        struct stat st;
        if (fstatat(log_cfg.dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(log_cfg.dir_fd, de->d_name, 0) != 0 && errno != ENOENT) {
            char eb[128];
            log_report("log: cannot delete %s/%s: %s", log_cfg.dir, de->d_name,
                       log_strerror(errno, eb, sizeof(eb)));
        }
    }
    closedir(d);
}

/* Highest existing -NN of a service and day in dir; false when there is none. */
static bool log_last_index_locked(const char *service, int ymd, unsigned *index_r)
{
    int fd = openat(log_cfg.dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            (void)close(fd);
        return false;
    }
    bool found = false;
    size_t slen = strlen(service);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t svc_len;
        int fymd;
        unsigned index;
        if (!log_file_name_parse(de->d_name, log_cfg.node, &svc_len, &fymd, &index) ||
            fymd != ymd || svc_len != slen || memcmp(de->d_name, service, slen) != 0 ||
            index > LOG_FILE_INDEX_MAX)
            continue;
        if (!found || index > *index_r)
            *index_r = index;
        found = true;
    }
    closedir(d);
    return found;
}

/* Opens a service's file for (ymd, index). Returns whether it is open. Needs log_mutex. */
static bool log_file_open_locked(struct log_service *svc, int ymd, unsigned index, time_t now)
{
    char name[LOG_FILE_NAME_MAX];
    log_file_name(name, sizeof(name), svc->name, log_cfg.node, ymd, index);
    log_service_close(svc);
    int fd = openat(log_cfg.dir_fd, name,
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0640);
    struct stat st;
    int err = 0;
    if (fd < 0 || fstat(fd, &st) != 0)
        err = errno;
    else if (!S_ISREG(st.st_mode))
        err = EINVAL; /* O_NOFOLLOW and O_WRONLY leave only FIFOs and devices to refuse */
    if (err != 0) {
        char eb[128];
        log_report("log: cannot open %s/%s: %s", log_cfg.dir, name,
                   log_strerror(err, eb, sizeof(eb)));
        if (fd >= 0)
            (void)close(fd);
        svc->retry_after = now + LOG_RETRY_SECONDS;
        return false;
    }
    svc->open = true;
    svc->fd = fd;
    svc->day = ymd;
    svc->index = index;
    svc->size = (uint64_t)st.st_size;
    return true;
}

/* Whether a line of len bytes goes into file -index of the given size (the last index takes
 * everything: see LOG_FILE_INDEX_MAX). */
static bool log_file_fits(unsigned index, uint64_t size, size_t len)
{
    return log_cfg.rotate_bytes == 0 || size == 0 || size + len <= log_cfg.rotate_bytes ||
           index >= LOG_FILE_INDEX_MAX;
}

/* Writes a line to the service's file, switching files on a new day or past rotate_bytes. */
static void log_file_write_locked(struct log_service *svc, const struct timespec *ts, int ymd,
                                  long epoch_day, const char *line, size_t len)
{
    if (!log_cfg.have_dir)
        return;
    if (!svc->open && ts->tv_sec < svc->retry_after)
        return;

    bool opened = false;
    if (!svc->open || svc->day != ymd) {
        unsigned index = 0;
        if (log_last_index_locked(svc->name, ymd, &index)) {
            /* continue the day's last file if this line fits in it */
            char name[LOG_FILE_NAME_MAX];
            struct stat st;
            log_file_name(name, sizeof(name), svc->name, log_cfg.node, ymd, index);
            if (fstatat(log_cfg.dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                !log_file_fits(index, (uint64_t)st.st_size, len))
                index++;
        }
        if (!log_file_open_locked(svc, ymd, index, ts->tv_sec))
            return;
        opened = true;
    } else if (!log_file_fits(svc->index, svc->size, len)) {
        if (!log_file_open_locked(svc, ymd, svc->index + 1, ts->tv_sec))
            return;
        opened = true;
    }
    if (opened && log_cfg.swept_day != epoch_day)
        log_retention_sweep_locked(epoch_day);

    if (log_write_fd(svc->fd, line, len) != 0) {
        char eb[128];
        log_report("log: cannot write %s-%s-%08d-%02u.log in %s: %s", svc->name, log_cfg.node,
                   svc->day, svc->index, log_cfg.dir, log_strerror(errno, eb, sizeof(eb)));
        log_service_close(svc);
        svc->retry_after = ts->tv_sec + LOG_RETRY_SECONDS;
        return;
    }
    svc->size += len;
}

/* ---- formatting ---- */

static void log_append(char *buf, size_t *pos, size_t limit, const char *s)
{
    size_t n = strlen(s);
    if (n > limit - *pos)
        n = limit - *pos;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

static size_t log_hex_escape(char out[4], unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
    return 4;
}

/* Appends a session id or client address: printable ASCII other than space and brackets
 * as is, other bytes as \xNN; at most LOG_FIELD_MAX bytes, a cut field ending in "...".
 * NULL or "" is "-". */
static void log_append_field(char *buf, size_t *pos, const char *s)
{
    if (s == NULL || s[0] == '\0') {
        buf[(*pos)++] = '-';
        return;
    }
    size_t limit = *pos + LOG_FIELD_MAX;
    size_t cut_limit = limit - 3, cut_pos = 0;
    bool cut_known = false;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t n = 1;
        if (c <= ' ' || c >= 0x7f || c == '[' || c == ']')
            n = log_hex_escape(esc, c);
        else
            esc[0] = (char)c;
        if (!cut_known && *pos + n > cut_limit) {
            /* where the field ends if it turns out too long */
            cut_pos = *pos;
            cut_known = true;
        }
        if (*pos + n > limit) {
            memcpy(buf + cut_pos, "...", 3);
            *pos = cut_pos + 3;
            return;
        }
        memcpy(buf + *pos, esc, n);
        *pos += n;
    }
}

/* Escapes msg[0 .. len) into buf[*pos .. limit): CR and LF as "\r" "\n", other control bytes
 * as \xNN, everything else as is. Stops before an escape or a UTF-8 sequence that does not
 * fit. Returns the number of message bytes consumed. */
static size_t log_escape_message(char *buf, size_t *pos, size_t limit, const char *msg, size_t len)
{
    size_t p = *pos, i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        char esc[4];
        size_t n = 2;
        if (c == '\r') {
            memcpy(esc, "\\r", 2);
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            n = log_hex_escape(esc, c);
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (p + n > limit)
            break;
        memcpy(buf + p, esc, n);
        p += n;
    }
    if (i < len) {
        /* Cut: drop a UTF-8 sequence left incomplete. Bytes >= 0x80 are copied as is, so
         * the trailing output bytes are the trailing input bytes. */
        size_t k = i;
        while (k > 0 && i - k < 3 && ((unsigned char)msg[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)msg[k - 1] >= 0xc0) {
            unsigned char lead = (unsigned char)msg[k - 1];
            size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
            size_t have = i - (k - 1);
            if (have < need) {
                p -= have;
                i = k - 1;
            }
        }
    }
    *pos = p;
    return i;
}

/* Builds one line into line[0 .. LOG_LINE_MAX) and returns its length, newline included.
 * The prefix is bounded (stamp, node id, service name, two fields: a few hundred bytes), so
 * the message always gets most of the line. */
static size_t log_format_line(char *line, const struct timespec *ts, const struct tm *tm,
                              const char *node, const char *service, const char *session,
                              const char *client, const char *tag, const char *msg, size_t mlen)
{
    char stamp[128];
    size_t pos = 0;
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm->tm_year + 1900,
             tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec,
             ts->tv_nsec / 1000000);
    log_append(line, &pos, LOG_LINE_MAX, stamp);
    log_append(line, &pos, LOG_LINE_MAX, node);
    log_append(line, &pos, LOG_LINE_MAX, " ");
    log_append(line, &pos, LOG_LINE_MAX, service);
    log_append(line, &pos, LOG_LINE_MAX, " [s=");
    log_append_field(line, &pos, session);
    log_append(line, &pos, LOG_LINE_MAX, "] [c=");
    log_append_field(line, &pos, client);
    log_append(line, &pos, LOG_LINE_MAX, "] ");
    if (tag != NULL)
        log_append(line, &pos, LOG_LINE_MAX, tag);

    size_t mstart = pos;
    if (log_escape_message(line, &pos, LOG_LINE_MAX - 1, msg, mlen) < mlen) {
        pos = mstart;
        (void)log_escape_message(line, &pos, LOG_LINE_MAX - 4, msg, mlen);
        memcpy(line + pos, "...", 3);
        pos += 3;
    }
    line[pos++] = '\n';
    return pos;
}

/* Formats and writes one line. force: whatever the level (errors, warnings). */
static void log_emit(const char *service, enum log_level level, bool force, const char *tag,
                     const char *session, const char *client, const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

static void log_emit(const char *service, enum log_level level, bool force, const char *tag,
                     const char *session, const char *client, const char *fmt, va_list ap)
{
    if (!force && !log_enabled(service, level))
        return;

    /* Every byte of msg escapes to at least one byte of line, so a message longer than
     * LOG_LINE_MAX is cut whatever the prefix: formatting more would be wasted. */
    char msg[LOG_LINE_MAX + 1];
    size_t mlen;
    int n = fmt != NULL ? vsnprintf(msg, sizeof(msg), fmt, ap) : -1;
    if (n < 0) {
        mlen = strlen("(unformattable log message)");
        memcpy(msg, "(unformattable log message)", mlen + 1);
    } else {
        mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    }

    bool valid = log_service_name_valid(service);
    char line[LOG_LINE_MAX];

    pthread_mutex_lock(&log_mutex);
    struct log_service *svc = valid ? log_service_get_locked(service) : NULL;
    if (svc == NULL)
        svc = &log_other;

    struct timespec ts;
    struct tm tm;
    log_now_locked(&ts);
    if (gmtime_r(&ts.tv_sec, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    int ymd = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    long epoch_day = log_days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);

    size_t len = log_format_line(line, &ts, &tm, log_cfg.node, valid ? service : "-", session,
                                 client, tag, msg, mlen);
    if (log_cfg.to_stderr)
        log_stderr_write(line, len);
    log_file_write_locked(svc, &ts, ymd, epoch_day, line, len);
    pthread_mutex_unlock(&log_mutex);
}

void log_vwrite(const char *service, enum log_level level, const char *session, const char *client,
                const char *fmt, va_list ap)
{
    log_emit(service, level, false, NULL, session, client, fmt, ap);
}

void log_write(const char *service, enum log_level level, const char *session, const char *client,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, level, false, NULL, session, client, fmt, ap);
    va_end(ap);
}

void log_error(const char *service, const char *session, const char *client, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, LOG_SUMMARY, true, "error: ", session, client, fmt, ap);
    va_end(ap);
}

void log_warn(const char *service, const char *session, const char *client, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, LOG_SUMMARY, true, "warning: ", session, client, fmt, ap);
    va_end(ap);
}

/* ---- configuration ---- */

/* Creates dir and its missing parents (like mkdir -p). Returns 0, or -1 with errno set. */
static int log_mkdirs(const char *dir)
{
    char path[LOG_DIR_MAX];
    size_t len = strnlen(dir, sizeof(path));
    if (len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        if (path[i - 1] == '/')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return -1;
        path[i] = saved;
    }
    return 0;
}

int log_configure(const struct log_config *cfg)
{
    if (cfg == NULL) {
        log_report("log: no configuration");
        return -1;
    }
    if (!log_node_id_valid(cfg->node_id)) {
        log_report("log: invalid node id (1 to %d of A-Z a-z 0-9 . _ -)", LOG_NODE_ID_MAX);
        return -1;
    }
    if (!log_level_valid((int)cfg->default_level) || cfg->retention_days < 0) {
        log_report("log: invalid default level or retention days");
        return -1;
    }
    bool have_dir = cfg->dir != NULL && cfg->dir[0] != '\0';
    int dir_fd = -1;
    if (have_dir) {
        char eb[128];
        if (strnlen(cfg->dir, LOG_DIR_MAX) >= LOG_DIR_MAX) {
            log_report("log: log directory path longer than %d bytes", LOG_DIR_MAX - 1);
            return -1;
        }
        if (log_mkdirs(cfg->dir) != 0) {
            log_report("log: cannot create log directory %s: %s", cfg->dir,
                       log_strerror(errno, eb, sizeof(eb)));
            return -1;
        }
        dir_fd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) {
            log_report("log: cannot open log directory %s: %s", cfg->dir,
                       log_strerror(errno, eb, sizeof(eb)));
            return -1;
        }
    }

    pthread_mutex_lock(&log_mutex);
    log_close_all_locked();
    if (log_cfg.have_dir)
        (void)close(log_cfg.dir_fd);
    size_t nlen = strlen(cfg->node_id);
    memcpy(log_cfg.node, cfg->node_id, nlen + 1);
    log_cfg.to_stderr = cfg->to_stderr;
    log_cfg.have_dir = have_dir;
    log_cfg.dir_fd = dir_fd;
    if (have_dir)
        memcpy(log_cfg.dir, cfg->dir, strlen(cfg->dir) + 1);
    else
        log_cfg.dir[0] = '\0';
    log_cfg.rotate_bytes = cfg->rotate_bytes;
    log_cfg.retention_days = cfg->retention_days;
    log_cfg.swept_day = LONG_MIN;

    atomic_store_explicit(&log_default_level, (int)cfg->default_level, memory_order_relaxed);
    unsigned n = atomic_load_explicit(&log_nservices, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        atomic_store_explicit(&log_services[i].level, -1, memory_order_relaxed);

    struct timespec ts;
    struct tm tm;
    log_now_locked(&ts);
    if (gmtime_r(&ts.tv_sec, &tm) != NULL)
        log_retention_sweep_locked(
            log_days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday));
    pthread_mutex_unlock(&log_mutex);
    return 0;
}

void log_shutdown(void)
{
    pthread_mutex_lock(&log_mutex);
    log_close_all_locked();
    if (log_cfg.have_dir)
        (void)close(log_cfg.dir_fd);
    log_cfg.have_dir = false;
    log_cfg.dir_fd = -1;
    log_cfg.dir[0] = '\0';
    pthread_mutex_unlock(&log_mutex);
}
