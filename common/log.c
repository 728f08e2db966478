/*
 * logfmt writer (see log.h). Each line is formatted into one buffer and
 * written with a single write(2) so lines from several processes sharing
 * stderr do not interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int pl_log_level = PL_LOG_INFO;
static const char *log_app = "parley";
static int log_worker = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void pl_log_init(const char *app, int worker)
{
    log_app = app;
    log_worker = worker;
}

int pl_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

/* Appends s[0..n) quoted, escaping quotes, backslashes and control bytes. */
static size_t put_quoted(char *out, size_t cap, size_t pos, const char *s, size_t n)
{
    if (pos < cap)
        out[pos++] = '"';
    for (size_t i = 0; i < n && pos + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            pos += (size_t)snprintf(out + pos, cap - pos, "\\x%02x", ch);
        } else {
            out[pos++] = (char)ch;
        }
    }
    if (pos < cap)
        out[pos++] = '"';
    return pos;
}

void pl_log_write(int level, const char *fmt, ...)
{
    char text[2048], line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t tlen = (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    size_t pos =
        (size_t)snprintf(line, sizeof(line), "ts=%s.%03dZ level=%s app=%s pid=%d", ts,
                         (int)(tv.tv_usec / 1000), level_names[level], log_app, (int)getpid());
    if (log_worker >= 0)
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, " worker=%d", log_worker);
    pos += (size_t)snprintf(line + pos, sizeof(line) - pos, " msg=");

    const char *tab = memchr(text, '\t', tlen);
    size_t mlen = tab ? (size_t)(tab - text) : tlen;
    pos = put_quoted(line, sizeof(line) - 2, pos, text, mlen);
    if (tab) {
        size_t flen = tlen - mlen - 1;
        if (pos + 1 + flen > sizeof(line) - 2)
            flen = sizeof(line) - 2 - pos - 1;
        line[pos++] = ' ';
        memcpy(line + pos, tab + 1, flen);
        pos += flen;
    }
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}
