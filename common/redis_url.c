/*
 * Parsing redis_url (see redis_url.h). Before this file the gateway and
 * the archiver each had a parser, and they disagreed: the gateway split
 * "[::1]:6379" at its first ':' (so every worker exited at start while
 * --check-config, which only looked at the scheme, passed), and the
 * archiver sent "AUTH password" for "user:password@", logging in as the
 * default user where the gateway logged in as the named one.
 */
#include "redis_url.h"
#include "parse.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(pl_redis_url_t *u, char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "'%s' %s", url, why);
    pl_redis_url_free(u);
    return -1;
}

/* A database number: digits up to PL_REDIS_MAX_DB. */
static int parse_db(const char *s, size_t n, int *db)
{
    uint64_t v;
    if (pl_parse_u64(s, n, &v) < 0 || v > PL_REDIS_MAX_DB)
        return -1;
    *db = (int)v;
    return 0;
}

/* Characters no host name or address can hold (they would only surface
 * later as a resolver error in every worker). */
static int bad_host_char(char c)
{
    return (unsigned char)c <= ' ' || c == '?' || c == '#' || c == '[' || c == ']' || c == '@' ||
           c == '/' || c == '\\' || c == 0x7f;
}

/* unix:///path[?db=N] or /path[?db=N]: path is where the socket path starts. */
static int parse_socket(const char *url, const char *path, pl_redis_url_t *u, char *err,
                        size_t errlen)
{
    const char *q = strchr(path, '?');
    size_t n = q ? (size_t)(q - path) : strlen(path);
    if (n == 0 || path[0] != '/')
        return fail(u, err, errlen, url, "has no absolute socket path");
    u->socket = pl_xstrndup(path, n);
    u->port = 0;
    if (q && (strncmp(q + 1, "db=", 3) != 0 || parse_db(q + 4, strlen(q + 4), &u->db) < 0))
        return fail(u, err, errlen, url, "has a bad query: only ?db=N follows a socket path");
    return 0;
}

int pl_redis_url_parse(const char *url, pl_redis_url_t *out, char *err, size_t errlen)
{
    pl_redis_url_t *u = out;
    memset(u, 0, sizeof(*u));
    u->port = PL_REDIS_DEFAULT_PORT;
    if (url[0] == '/')
        return parse_socket(url, url, u, err, errlen);
    if (strncmp(url, "unix://", 7) == 0)
        return parse_socket(url, url + 7, u, err, errlen);
    if (strncmp(url, "redis://", 8) != 0)
        return fail(u, err, errlen, url,
                    "is not redis://[[user]:password@]host[:port][/db], unix:///path or /path");

    /* authority = up to the first '/'; userinfo = up to its last '@' */
    const char *auth = url + 8;
    const char *slash = strchr(auth, '/');
    const char *aend = slash ? slash : auth + strlen(auth);
    const char *at = NULL;
    for (const char *s = auth; s < aend; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon) {
            if (colon > auth)
                u->user = pl_xstrndup(auth, (size_t)(colon - auth));
            u->password = pl_xstrndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            u->password = pl_xstrndup(auth, (size_t)(at - auth));
        }
        auth = at + 1;
    }

    /* host[:port] or [v6][:port] */
    const char *hbeg = auth, *hend, *colon;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(aend - auth));
        if (rb == NULL)
            return fail(u, err, errlen, url, "has an unterminated '[' (IPv6 is [addr]:port)");
        hbeg = auth + 1;
        hend = rb;
        if (rb + 1 < aend && rb[1] != ':')
            return fail(u, err, errlen, url, "has junk after ']' (IPv6 is [addr]:port)");
        colon = rb + 1 < aend ? rb + 1 : NULL;
        if (hend == hbeg)
            return fail(u, err, errlen, url, "has an empty IPv6 address");
        for (const char *s = hbeg; s < hend; s++)
            if (bad_host_char(*s))
                return fail(u, err, errlen, url, "has a character no IPv6 address holds");
    } else {
        colon = memchr(auth, ':', (size_t)(aend - auth));
        hend = colon ? colon : aend;
        for (const char *s = hbeg; s < hend; s++)
            if (bad_host_char(*s))
                return fail(u, err, errlen, url, "has a character no host name holds");
    }
    u->host = hend > hbeg ? pl_xstrndup(hbeg, (size_t)(hend - hbeg)) : pl_xstrdup("127.0.0.1");
    if (colon) {
        uint64_t port;
        if (pl_parse_u64(colon + 1, (size_t)(aend - colon - 1), &port) < 0 || port == 0 ||
            port > 65535)
            return fail(u, err, errlen, url,
                        "has a bad port (1-65535; an IPv6 address goes in brackets)");
        u->port = (int)port;
    }

    /* [/db] */
    if (slash && slash[1] != '\0' && parse_db(slash + 1, strlen(slash + 1), &u->db) < 0)
        return fail(u, err, errlen, url, "has a bad database number (/N with N from 0)");
    return 0;
}

void pl_redis_url_free(pl_redis_url_t *u)
{
    free(u->host);
    free(u->socket);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof(*u));
}

int pl_redis_url_auth(const pl_redis_url_t *u, const char *argv[3], size_t lens[3])
{
    if (u->password == NULL)
        return 0;
    int argc = 0;
    argv[argc] = "AUTH";
    lens[argc++] = 4;
    if (u->user) {
        argv[argc] = u->user;
        lens[argc++] = strlen(u->user);
    }
    argv[argc] = u->password;
    lens[argc++] = strlen(u->password);
    return argc;
}
