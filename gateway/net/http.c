/*
 * HTTP request head parsing and responses for the gateway port (see
 * http.h). Strict where strictness costs nothing (request line, header
 * syntax, size) and tolerant where clients differ (bare LF, token lists,
 * header case).
 */
#include "http.h"
#include "util.h"
#include "ws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 tchar */
static int is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* True if the comma-separated list v[0..len) holds token (any case). */
static int list_has(const char *v, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Finds the end of the head: returns its length, 0 if not there yet. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Returns the length of the line at p (excluding CRLF / LF) and sets
 * *next past the terminator; -1 if a CR is not followed by LF. */
static long line_len(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return -1;
    const char *e = nl;
    if (e > p && e[-1] == '\r')
        e--;
    if (memchr(p, '\r', (size_t)(e - p)) != NULL)
        return -1;
    *next = nl + 1;
    return e - p;
}

static int parse_request_line(const char *p, size_t n, pl_http_req_t *req)
{
    const char *sp1 = memchr(p, ' ', n);
    if (sp1 == NULL || sp1 == p)
        return -1;
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q))
            return -1;
    req->is_get = (sp1 - p == 3 && memcmp(p, "GET", 3) == 0);
    const char *t = sp1 + 1, *end = p + n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (sp2 == NULL || sp2 == t || *t != '/')
        return -1;
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return -1;
    const char *qm = memchr(t, '?', (size_t)(sp2 - t));
    req->path = t;
    req->path_len = (size_t)((qm ? qm : sp2) - t);
    if (qm) {
        req->query = qm + 1;
        req->query_len = (size_t)(sp2 - qm - 1);
    }
    const char *v = sp2 + 1;
    if (end - v != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
        return -1;
    req->http11 = v[7] == '1';
    return 0;
}

int pl_http_parse(const char *buf, size_t len, pl_http_req_t *req)
{
    memset(req, 0, sizeof(*req));
    size_t hlen = head_end(buf, len < PL_HTTP_MAX_HEAD ? len : PL_HTTP_MAX_HEAD);
    if (hlen == 0)
        return len >= PL_HTTP_MAX_HEAD ? 431 : PL_AGAIN;
    req->head_len = hlen;
    const char *end = buf + hlen, *p = buf, *next;

    long n = line_len(p, end, &next);
    if (n <= 0 || parse_request_line(p, (size_t)n, req) < 0)
        return 400;
    for (p = next; (n = line_len(p, end, &next)) != 0; p = next) {
        if (n < 0)
            return 400;
        const char *colon = memchr(p, ':', (size_t)n);
        if (colon == NULL || colon == p)
            return 400; /* also rejects obsolete line folding */
        for (const char *q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return 400;
        const char *v = colon + 1, *ve = p + n;
        for (const char *q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return 400;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nlen = (size_t)(colon - p), vlen = (size_t)(ve - v);
        if (name_is(p, nlen, "upgrade")) {
            req->upgrade_websocket |= list_has(v, vlen, "websocket");
        } else if (name_is(p, nlen, "connection")) {
            req->connection_upgrade |= list_has(v, vlen, "upgrade");
        } else if (name_is(p, nlen, "sec-websocket-key")) {
            req->dup_key |= req->key != NULL;
            req->key = v;
            req->key_len = vlen;
        } else if (name_is(p, nlen, "sec-websocket-version")) {
            req->version = v;
            req->version_len = vlen;
        } else if (name_is(p, nlen, "origin")) {
            req->origin = v;
            req->origin_len = vlen;
        } else if (name_is(p, nlen, "x-forwarded-for")) {
            /* the last line: the proxy nearest us appends to it */
            req->forwarded_for = v;
            req->forwarded_for_len = vlen;
        } else if (name_is(p, nlen, "x-real-ip")) {
            req->real_ip = v;
            req->real_ip_len = vlen;
        }
    }
    return PL_OK;
}

int pl_http_path_is(const pl_http_req_t *req, const char *path)
{
    return path != NULL && *path != '\0' && strlen(path) == req->path_len &&
           memcmp(req->path, path, req->path_len) == 0;
}

/* True if origin[0..len) is exactly one entry of the allow-list. */
static int origin_allowed(const char *origins, const char *origin, size_t len)
{
    char o[256];
    if (len == 0 || len >= sizeof(o) || memchr(origin, ',', len) != NULL)
        return 0;
    memcpy(o, origin, len);
    o[len] = '\0';
    return list_has(origins, strlen(origins), o);
}

int pl_http_check_upgrade(const pl_http_req_t *req, const char *origins, char accept[29],
                          enum pl_hs_reason *reason)
{
    if (!req->is_get) {
        *reason = PL_HS_METHOD;
        return 405;
    }
    if (!req->http11 || !req->upgrade_websocket || !req->connection_upgrade) {
        *reason = PL_HS_NOT_UPGRADE;
        return 400;
    }
    if (req->version == NULL) {
        *reason = PL_HS_BAD_VERSION;
        return 400;
    }
    if (req->version_len != 2 || memcmp(req->version, "13", 2) != 0) {
        *reason = PL_HS_BAD_VERSION;
        return 426;
    }
    if (req->key == NULL || req->dup_key || pl_ws_accept_key(req->key, req->key_len, accept) < 0) {
        *reason = PL_HS_BAD_KEY;
        return 400;
    }
    /* A request without Origin comes from a non-browser client, which
     * could send any Origin anyway; the list guards against browsers. */
    if (origins != NULL && *origins != '\0' && req->origin != NULL &&
        !origin_allowed(origins, req->origin, req->origin_len)) {
        *reason = PL_HS_ORIGIN;
        return 403;
    }
    return 0;
}

const char *pl_http_reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

size_t pl_http_head(char *out, size_t cap, int status, const char *content_type,
                    size_t content_length, const char *extra)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: parley\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "%s\r\n",
                     status, pl_http_reason(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", content_length,
                     extra ? extra : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t pl_http_upgrade_response(char *out, size_t cap, const char accept[29])
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %.28s\r\n"
                     "\r\n",
                     accept);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
