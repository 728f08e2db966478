/*
 * One client connection: the state machine HTTP head -> WebSocket open ->
 * closing -> closed, its input buffer and its output queue.
 *
 * Fields above the marker are the protocol layer's to read (and session
 * to own); the rest belong to conn.c.
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
    uint64_t id;           /* unique within the worker (logs, origin of envelopes) */
    struct pl_worker *w;   /* owning worker */
    enum conn_state state; /* written only by conn_set_state() in conn.c */
    char peer[56];         /* "ip:port" or "[ipv6]:port" of the client */
    void *session;         /* protocol layer's per-connection state (cmd.c) */
    const char *user;      /* set by the protocol after auth (owned by session), for logs */
    size_t out_bytes;      /* bytes queued for writing, shared frames included */
    /* ---- transport-private fields below (conn.c) ---- */
    struct pl_conn_private *priv;
    struct pl_conn *next; /* worker's open or closed list (worker.c) */
    struct pl_conn **pprev;
} pl_conn_t;

/* Queues one text frame with a copy of payload. No-op unless OPEN. */
void pl_conn_send_text(pl_conn_t *c, const char *payload, size_t len);
/* Queues a shared frame without copying; takes one reference, released
 * when the bytes are written or the connection is freed. No-op unless
 * OPEN. Past send_buffer_limit the connection is closed with 1013. */
void pl_conn_send_frame(pl_conn_t *c, pl_frame_t *f);
/* The one exit: logs once (reason), queues a close frame with code, sets
 * CLOSING; the connection is freed later by the worker, never inside the
 * caller's stack. Safe to call more than once (later calls are ignored).
 * Codes that may not be sent (1005, 1006, 1015, < 1000, >= 5000) become
 * 1011. In HTTP state the socket is simply dropped. pl_proto_closed comes
 * later, when the socket is really closed (close handshake done, timeout
 * or error), never from inside this call; meanwhile sends are no-ops. */
void pl_conn_close(pl_conn_t *c, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs with the connection's prefix (worker, conn id, peer). */
void pl_conn_log(pl_conn_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- transport-private API (worker.c <-> conn.c) ---- */

struct sockaddr;

/* Takes over an accepted non-blocking socket: state HTTP, handshake timer
 * armed, linked on the worker's open list. */
pl_conn_t *pl_conn_new(struct pl_worker *w, int fd, const struct sockaddr *sa);
/* Worker draining: an open WebSocket gets close 1001; an HTTP client may
 * finish its request (/healthz then answers 503, an upgrade completes and
 * is closed with 1001 at once); one that has sent nothing yet gets 1 s. */
void pl_conn_go_away(pl_conn_t *c);
/* Drops the connection now (state CLOSED), logging why. */
void pl_conn_abort(pl_conn_t *c, const char *why);
/* Frees a CLOSED connection; only the worker calls it, at the end of a
 * loop pass. */
void pl_conn_free(pl_conn_t *c);
const char *pl_conn_state_name(enum conn_state s);
/* Output bytes queued on all of this process's connections now, and the
 * most at any time since the previous call (which this call resets). */
void pl_conn_queued(size_t *now, size_t *peak);

#endif
