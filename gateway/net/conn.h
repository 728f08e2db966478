/*
 * One client connection: the state machine HTTP head -> WebSocket open ->
 * closing -> closed, its input buffer and its output queue. This is what
 * a module on a WebSocket path (ops.h) sees of it: the fields below are
 * its to read (and session to own); priv belongs to conn.c. The
 * transport's own calls are in net_private.h.
 */
#ifndef PL_CONN_H
#define PL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct pl_worker;

enum conn_state {
    CONN_HTTP,    /* reading the request head; handshake timer armed */
    CONN_OPEN,    /* WebSocket open; ping timer armed */
    CONN_CLOSING, /* close frame queued/sent; close timer armed, reads only look for close */
    CONN_CLOSED,  /* socket shut; on the worker's free list until the loop pass ends */
};

typedef struct pl_conn {
    uint64_t id;                  /* unique within the worker (logs, origin of envelopes) */
    struct pl_worker *w;          /* owning worker */
    enum conn_state state;        /* written only by conn_set_state() in conn.c */
    char peer[56];                /* "ip:port" or "[ipv6]:port" of the client; behind a trusted
                                     proxy, once its request is read, the client address its
                                     headers name ("ip" or "[ipv6]", no port) */
    void *session;                /* the path's module's per-connection state (set in open,
                                     released in closed) */
    const char *user;             /* set by the module after auth (owned by session), for logs */
    size_t out_bytes;             /* bytes queued for writing, shared frames included */
    struct pl_conn_private *priv; /* conn.c's (opaque here) */
} pl_conn_t;

/* Queues one text frame with a copy of payload. No-op unless OPEN. Past
 * send_buffer_limit the connection is closed with 1013. */
void pl_conn_send_text(pl_conn_t *c, const char *payload, size_t len);
/* The same with a binary frame. */
void pl_conn_send_binary(pl_conn_t *c, const void *payload, size_t len);
/* Queues a shared frame without copying; takes one reference, released
 * when the bytes are written or the connection is freed. No-op unless
 * OPEN. Past send_buffer_limit the connection is closed with 1013. */
void pl_conn_send_frame(pl_conn_t *c, pl_frame_t *f);
/* The one exit: logs once (reason), queues a close frame with code, sets
 * CLOSING; the connection is freed later by the worker, never inside the
 * caller's stack. Safe to call more than once (later calls are ignored).
 * Codes that may not be sent (1005, 1006, 1015, < 1000, >= 5000) become
 * 1011. In HTTP state the socket is simply dropped. The module's closed
 * hook comes later, when the socket is really closed (close handshake done, timeout
 * or error), never from inside this call; meanwhile sends are no-ops. */
void pl_conn_close(pl_conn_t *c, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* pl_conn_close with a reason for the peer in the close frame (UTF-8,
 * cut to the 123 bytes a close frame holds), for codes a client acts on
 * (4001 "token expired"); fmt is still only for the log. */
void pl_conn_close_reason(pl_conn_t *c, uint16_t code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The largest message this connection may send from now on (max_message_size
 * until set; the module lowers it at open, e.g. before authentication, and
 * raises it again later). A message over it closes the connection with
 * 1009; with limit_id >= 0 (pl_metrics_limit_register) that also counts
 * in parley_limit_rejections_total under that id and the close is logged
 * as a limit. A message already being reassembled is held to the new
 * value. No-op unless OPEN. */
void pl_conn_set_max_message(pl_conn_t *c, size_t max, int limit_id);

/* Logs with the connection's prefix (worker, conn id, peer). */
void pl_conn_log(pl_conn_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
