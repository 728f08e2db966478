/*
 * The HTTP/1.1 side of the gateway port: a pure parser for one request
 * head, the WebSocket upgrade checks (RFC 6455 4.2.1) and response
 * builders. No sockets and no libevent, so unit tests and the fuzzer call
 * it directly; conn.c feeds it the bytes read so far.
 */
#ifndef PL_HTTP_H
#define PL_HTTP_H

#include <stddef.h>

#include "metrics.h"

#define PL_HTTP_MAX_HEAD 8192 /* larger heads get 431 */

/* A parsed request head. Every pointer points into the caller's buffer
 * and lives as long as it; lengths exclude any terminator. */
typedef struct pl_http_req {
    size_t head_len;  /* bytes of the head, final blank line included */
    int is_get;       /* method is GET */
    int http11;       /* HTTP/1.1 (else HTTP/1.0) */
    const char *path; /* request target without the query */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    const char *key; /* Sec-WebSocket-Key, trimmed, or NULL */
    size_t key_len;
    const char *origin; /* Origin, or NULL */
    size_t origin_len;
    const char *version; /* Sec-WebSocket-Version, or NULL */
    size_t version_len;
    int upgrade_websocket;     /* Upgrade lists the token "websocket" */
    int connection_upgrade;    /* Connection lists the token "upgrade" */
    int dup_key;               /* Sec-WebSocket-Key appeared more than once */
    const char *forwarded_for; /* X-Forwarded-For (the last such line), or NULL; read only
                                  from a trusted proxy (addr.h) */
    size_t forwarded_for_len;
    const char *real_ip; /* X-Real-IP, or NULL; likewise */
    size_t real_ip_len;
} pl_http_req_t;

/*
 * Parses the request head at the start of buf[0..len).
 *   PL_OK: *req is filled; the head is req->head_len bytes (anything after
 *     it is the client's first WebSocket bytes).
 *   PL_AGAIN: no complete head yet and fewer than PL_HTTP_MAX_HEAD bytes.
 *   400: malformed (bad request line, header syntax, control bytes).
 *   431: the head is (or will be) larger than PL_HTTP_MAX_HEAD.
 * Header names are case-insensitive; bare LF line ends are accepted.
 */
int pl_http_parse(const char *buf, size_t len, pl_http_req_t *req);

/* True if the request's path (query ignored) equals path. */
int pl_http_path_is(const pl_http_req_t *req, const char *path);

/*
 * Checks a parsed request for a WebSocket upgrade. origins is the
 * comma-separated allow-list ("" or NULL = any). Returns 0 and writes the
 * Sec-WebSocket-Accept value into accept, or an HTTP status (400, 403,
 * 405, 426) with *reason set for the handshake failure metric.
 */
int pl_http_check_upgrade(const pl_http_req_t *req, const char *origins, char accept[29],
                          enum pl_hs_reason *reason);

/* Reason phrase for a status code ("Not Found"). */
const char *pl_http_reason(int status);

/*
 * Writes a response head with Connection: close, Content-Length and, if
 * content_type is not NULL, Content-Type; extra (may be NULL) is added
 * verbatim and must end in CRLF. Returns the length, or 0 if cap is too
 * small.
 */
size_t pl_http_head(char *out, size_t cap, int status, const char *content_type,
                    size_t content_length, const char *extra);

/* Writes the 101 Switching Protocols response. Returns the length. */
size_t pl_http_upgrade_response(char *out, size_t cap, const char accept[29]);

#endif
