/*
 * mysql:// URL and unix socket path parser (see mysql_url.h). Pure string
 * work so it can be unit tested and reused without a server.
 */
#include "mysql_url.h"
#include "parse.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or an
 * encoded NUL (which no MySQL name or password can contain). */
static char *decode(const char *s, size_t n)
{
    char *out = pl_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
            continue;
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    return out;
}

static int fail(pl_mysql_url_t *u, char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg); /* before the free: arg may point into u */
    pl_mysql_url_free(u);
    return -1;
}

/* Sets *field from s[0..n), percent-decoded, replacing an earlier value. */
static int set_decoded(char **field, const char *s, size_t n)
{
    char *v = decode(s, n);
    if (v == NULL)
        return -1;
    free(*field);
    *field = v;
    return 0;
}

/* Parses "k=v&k=v" (q[0..n)) into u. */
static int parse_query(pl_mysql_url_t *u, const char *q, size_t n, char *err, size_t errlen)
{
    const char *end = q + n;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        if (eq == NULL || eq == q) {
            snprintf(err, errlen, "query parameter '%.*s' is not key=value", (int)(pe - q), q);
            return -1;
        }
        size_t klen = (size_t)(eq - q);
        char **field = NULL;
        if (klen == 6 && memcmp(q, "socket", 6) == 0)
            field = &u->socket;
        else if (klen == 4 && memcmp(q, "user", 4) == 0)
            field = &u->user;
        else if (klen == 8 && memcmp(q, "password", 8) == 0)
            field = &u->password;
        else if (klen == 8 && memcmp(q, "database", 8) == 0)
            field = &u->database;
        if (field == NULL) {
            snprintf(err, errlen,
                     "unknown query parameter '%.*s' (socket, user, password, database)", (int)klen,
                     q);
            return -1;
        }
        if (set_decoded(field, eq + 1, (size_t)(pe - eq - 1)) < 0) {
            snprintf(err, errlen, "bad percent-escape in '%.*s'", (int)(pe - q), q);
            return -1;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

int pl_mysql_url_parse(const char *url, pl_mysql_url_t *out, char *err, size_t errlen)
{
    pl_mysql_url_t u = {0};
    memset(out, 0, sizeof(*out));
    if (url == NULL || *url == '\0')
        return fail(&u, err, errlen, "%sempty MySQL URL", "");

    const char *qmark = strchr(url, '?');
    size_t mainlen = qmark ? (size_t)(qmark - url) : strlen(url);

    if (url[0] == '/') {
        /* A bare unix socket path, optionally with ?user=..&database=.. */
        u.socket = pl_xstrndup(url, mainlen);
    } else if (strncmp(url, "mysql://", 8) == 0) {
        const char *p = url + 8, *end = url + mainlen;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *auth_end = slash ? slash : end;
        /* The last '@' before the path ends the credentials, so an
         * unencoded '@' in a password still works. */
        const char *at = NULL;
        for (const char *s = p; s < auth_end; s++)
            if (*s == '@')
                at = s;
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            const char *uend = colon ? colon : at;
            if (uend > p && set_decoded(&u.user, p, (size_t)(uend - p)) < 0)
                return fail(&u, err, errlen, "%sbad percent-escape in the user name", "");
            if (colon && set_decoded(&u.password, colon + 1, (size_t)(at - colon - 1)) < 0)
                return fail(&u, err, errlen, "%sbad percent-escape in the password", "");
            p = at + 1;
        }
        /* host[:port] or [v6][:port], possibly empty when a socket is given */
        const char *hend = auth_end, *portp = NULL;
        if (*p == '[') {
            const char *rb = memchr(p, ']', (size_t)(hend - p));
            if (rb == NULL)
                return fail(&u, err, errlen, "unterminated '[' in host of '%s'", url);
            if (rb > p + 1)
                u.host = pl_xstrndup(p + 1, (size_t)(rb - p - 1));
            if (rb + 1 < hend) {
                if (rb[1] != ':')
                    return fail(&u, err, errlen, "junk after ']' in '%s'", url);
                portp = rb + 2;
            }
        } else {
            const char *colon = memchr(p, ':', (size_t)(hend - p));
            const char *he = colon ? colon : hend;
            if (he > p)
                u.host = pl_xstrndup(p, (size_t)(he - p));
            if (colon)
                portp = colon + 1;
        }
        u.port = PL_MYSQL_DEFAULT_PORT;
        if (portp) {
            uint64_t port;
            if (portp == hend)
                return fail(&u, err, errlen, "empty port in '%s'", url);
            if (pl_parse_u64(portp, (size_t)(hend - portp), &port) < 0)
                return fail(&u, err, errlen, "bad port in '%s'", url);
            if (port == 0 || port > 65535)
                return fail(&u, err, errlen, "port out of range in '%s'", url);
            u.port = (unsigned)port;
        }
        if (slash && slash + 1 < end) {
            if (memchr(slash + 1, '/', (size_t)(end - slash - 1)))
                return fail(&u, err, errlen, "database name in '%s' contains '/'", url);
            if (set_decoded(&u.database, slash + 1, (size_t)(end - slash - 1)) < 0)
                return fail(&u, err, errlen, "%sbad percent-escape in the database name", "");
        }
    } else {
        return fail(&u, err, errlen,
                    "'%s' is not mysql://user:password@host:port/database or a "
                    "unix socket path",
                    url);
    }

    if (qmark && parse_query(&u, qmark + 1, strlen(qmark + 1), err, errlen) < 0) {
        pl_mysql_url_free(&u);
        return -1;
    }
    if (u.socket) {
        if (u.socket[0] != '/')
            return fail(&u, err, errlen, "socket '%s' is not an absolute path", u.socket);
        free(u.host);
        u.host = NULL;
        u.port = 0;
    } else if (u.host == NULL) {
        return fail(&u, err, errlen, "'%s' names neither a host nor a socket", url);
    }
    *out = u;
    return 0;
}

void pl_mysql_url_free(pl_mysql_url_t *u)
{
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->socket);
    free(u->database);
    memset(u, 0, sizeof(*u));
}

char *pl_mysql_url_describe(const pl_mysql_url_t *u, char *buf, size_t len)
{
    const char *user = u->user ? u->user : "";
    const char *db = u->database ? u->database : "";
    if (u->socket)
        snprintf(buf, len, "%s@unix:%s/%s", user, u->socket, db);
    else if (strchr(u->host, ':'))
        snprintf(buf, len, "%s@[%s]:%u/%s", user, u->host, u->port, db);
    else
        snprintf(buf, len, "%s@%s:%u/%s", user, u->host, u->port, db);
    return buf;
}
