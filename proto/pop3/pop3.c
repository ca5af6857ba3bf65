/* POP3 command lines and multi-line responses (see pop3.h).
 *
 * Lines: the service keeps unparsed input in one buffer and asks
 * pop3_line_find() for the next line with a bound, so no line, however the
 * client sends it, makes the buffer grow past that bound.
 *
 * Commands: parsed in place; the keyword table is short enough for a linear
 * search.
 *
 * Responses: a byte-at-a-time state machine (beginning of line, pending CR,
 * header or body, TOP lines left) so a message streamed from the blob store in
 * chunks cut at arbitrary places comes out the same as in one piece. */
#include "proto/pop3/pop3.h"

#include <string.h>

enum pop3_line_result pop3_line_find(const char *buf, size_t len, size_t max, size_t *len_r,
                                     size_t *used_r)
{
    size_t scan = len < max ? len : max;
    const char *lf = memchr(buf, '\n', scan);
    if (!lf)
        return len >= max ? POP3_LINE_TOO_LONG : POP3_LINE_MORE;
    size_t n = (size_t)(lf - buf);
    *used_r = n + 1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    *len_r = n;
    return POP3_LINE_OK;
}

static const struct {
    const char *name;
    enum pop3_cmd cmd;
} keywords[] = {
    {"USER", POP3_CMD_USER}, {"PASS", POP3_CMD_PASS}, {"APOP", POP3_CMD_APOP},
    {"AUTH", POP3_CMD_AUTH}, {"CAPA", POP3_CMD_CAPA}, {"STLS", POP3_CMD_STLS},
    {"STAT", POP3_CMD_STAT}, {"LIST", POP3_CMD_LIST}, {"RETR", POP3_CMD_RETR},
    {"DELE", POP3_CMD_DELE}, {"NOOP", POP3_CMD_NOOP}, {"RSET", POP3_CMD_RSET},
    {"TOP", POP3_CMD_TOP},   {"UIDL", POP3_CMD_UIDL}, {"QUIT", POP3_CMD_QUIT},
};

const char *pop3_cmd_name(enum pop3_cmd cmd)
{
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
        if (keywords[i].cmd == cmd)
            return keywords[i].name;
    return "";
}

int pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r)
{
    /* NUL and control characters have no place in a command; refusing them
     * here keeps them out of user names, passwords and logs. Bytes >= 0x80
     * pass: a password may be UTF-8. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch < 0x20 || ch == 0x7f)
            return -1;
    }
    line[len] = '\0';
    memset(cmd_r, 0, sizeof(*cmd_r));
    /* RFC 1939 §3: keywords are three or four characters, case-insensitive. */
    size_t k = 0;
    while (k < len && line[k] != ' ') {
        char ch = line[k];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) || k >= 4)
            return -1;
        cmd_r->keyword[k] = (char)(ch & ~0x20);
        k++;
    }
    if (k < 3)
        return -1;
    cmd_r->keyword[k] = '\0';
    cmd_r->cmd = POP3_CMD_UNKNOWN;
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
        if (!strcmp(keywords[i].name, cmd_r->keyword))
            cmd_r->cmd = keywords[i].cmd;
    char *p = line + k;
    if (cmd_r->cmd == POP3_CMD_PASS) {
        /* RFC 1939 §7: "PASS string" has exactly one argument, so the server
         * may treat spaces in it as part of the password. */
        if (*p == ' ' && p[1] != '\0') {
            cmd_r->args[0] = p + 1;
            cmd_r->nargs = 1;
        }
        return 0;
    }
    while (*p) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        if (cmd_r->nargs == POP3_ARGS_MAX)
            return -1;
        cmd_r->args[cmd_r->nargs++] = p;
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

int pop3_number_parse(const char *s, uint32_t min, uint32_t max, uint32_t *n_r)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *n_r = (uint32_t)v;
    return 0;
}

void pop3_stuffer_init(struct pop3_stuffer *s, bool top, uint32_t body_lines)
{
    memset(s, 0, sizeof(*s));
    s->top = top;
    s->lines_left = body_lines;
    s->bol = true;
}

/* A line has ended (its CRLF is written): move through header and body. */
static void line_ended(struct pop3_stuffer *s)
{
    bool empty = s->bol;
    s->bol = true;
    if (!s->in_body) {
        /* RFC 5322 §2.1: the first empty line ends the header section. */
        if (empty) {
            s->in_body = true;
            if (s->top && s->lines_left == 0)
                s->done = true;
        }
    } else if (s->top) {
        if (--s->lines_left == 0)
            s->done = true;
    }
}

size_t pop3_stuffer_feed(struct pop3_stuffer *s, const char *in, size_t len, char *out,
                         size_t *used_r)
{
    size_t o = 0, i = 0;
    while (i < len && !s->done) {
        char ch = in[i];
        if (s->cr) {
            /* CR LF, or a bare CR: either way the line ends here. */
            s->cr = false;
            out[o++] = '\r';
            out[o++] = '\n';
            line_ended(s);
            if (ch == '\n') {
                i++;
                continue;
            }
            if (s->done)
                break;
        }
        i++;
        if (ch == '\r') {
            s->cr = true;
            continue;
        }
        if (ch == '\n') {
            /* a bare LF */
            out[o++] = '\r';
            out[o++] = '\n';
            line_ended(s);
            continue;
        }
        /* RFC 1939 §3: a line beginning with the termination octet is
         * byte-stuffed with another one. */
        if (s->bol && ch == '.')
            out[o++] = '.';
        out[o++] = ch;
        s->bol = false;
    }
    if (used_r)
        *used_r = i;
    s->in += i;
    s->out += o;
    return o;
}

bool pop3_stuffer_done(const struct pop3_stuffer *s)
{
    return s->done;
}

size_t pop3_stuffer_finish(struct pop3_stuffer *s, char *out)
{
    size_t o = 0;
    if (s->cr || !s->bol) {
        out[o++] = '\r';
        out[o++] = '\n';
        s->cr = false;
        s->bol = true;
    }
    memcpy(out + o, ".\r\n", 3);
    o += 3;
    s->out += o;
    s->done = true;
    return o;
}
