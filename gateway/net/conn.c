/*
 * One client connection (see conn.h): the state machine
 *   HTTP -> OPEN -> CLOSING -> CLOSED   (or HTTP -> CLOSING after a plain
 *   HTTP response, HTTP/OPEN -> CLOSED on EOF, errors and timeouts),
 * the single read callback that drives it, and the output queue.
 *
 * Memory per idle WebSocket is kept small on purpose (the gateway holds
 * tens of thousands): three embedded struct events, no input buffer (bytes
 * are read into the worker's scratch buffer and only a partial frame is
 * copied into a per-connection buffer, freed once parsed), no output
 * buffer (the evbuffer is created on the first queued byte and freed when
 * it has been written out).
 *
 * What runs over the WebSocket is the module registered for the request
 * path (ops.h): conn.c keeps its id and calls its hooks (open, message,
 * binary, closed); it knows nothing of chat or echo.
 *
 * Output accounting: out_bytes counts every queued byte, shared frames
 * included. head_left tracks how much of the frame at the head of the
 * queue is still unwritten, so on overflow (1013) the queue can be cut at
 * a frame boundary and the close frame still parses on the client.
 */
#include "conn.h"
#include "addr.h"
#include "http.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "net_private.h"
#include "ops.h"
#include "util.h"
#include "worker.h"
#include "ws.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Laid out without holes: tens of thousands of these live at once, and
 * conn_full_t (608 bytes) sits just below a malloc size class step. */
struct pl_conn_private {
    LIST_ENTRY(pl_conn) link; /* the worker's open or closed list (pl_conn_list_*) */
    struct event ev_read;     /* EV_READ|EV_PERSIST on fd, added from accept until CLOSED */
    struct event ev_write;    /* EV_WRITE|EV_PERSIST, added only while out holds bytes */
    struct event ev_timer; /* HTTP: handshake timeout; OPEN: ping; CLOSING: close/linger timeout */
    uint8_t *in;           /* unparsed input carried between reads; NULL when none */
    uint8_t *msg;          /* fragmented message being reassembled; NULL when none */
    struct evbuffer *out;  /* output queue; NULL when empty */
    uint64_t head_left;    /* unwritten bytes of the frame (or HTTP head) at the head of out */
    pl_ws_parser_t parser;
    uint32_t in_len, in_cap;
    uint32_t msg_len, msg_cap; /* max_message_size is at most 1 GiB */
    uint32_t last_rx_ms;       /* pl_mono_ms() of the peer's last bytes, mod 2^32: compare by
                                  unsigned difference (intervals are far below 49 days) */
    uint32_t close_mark;       /* CLOSING: bytes the kernel held for the peer when the close
                                  timer was armed, plus what we wrote since (see closing_arm) */
    int fd;
    int msg_limit;       /* limit id counted when a message exceeds parser.max_message, -1 = none
                            (pl_conn_set_max_message) */
    unsigned ops : 3;    /* pl_ops_by_id index of the path's module; 0 before the upgrade */
    unsigned ws : 1;     /* the 101 was queued: out holds WebSocket frames */
    unsigned opened : 1; /* the module's open ran (or would have): its closed is owed */
    unsigned awaiting_pong : 1;
    unsigned peer_closed : 1; /* the peer's close frame arrived */
    unsigned linger : 1;      /* once flushed: half-close, drop input until EOF (see after_flush) */
    unsigned discard : 1;     /* ignore further input (after an error or an HTTP reply) */
    unsigned logged : 1;      /* the one death line was written */
    unsigned proxied : 1;     /* peer is a trusted proxy: c->peer is set from its headers */
    unsigned ip_held : 1;     /* counted in the per-ip table under c->peer's address */
};

typedef struct conn_full {
    pl_conn_t pub;
    struct pl_conn_private priv;
} conn_full_t;

_Static_assert(PL_OPS_MAX < 8, "struct pl_conn_private keeps the ops id in 3 bits");

static const pl_ws_ops_t *ops_of(const pl_conn_t *c)
{
    return pl_ops_by_id[c->priv->ops];
}

static const char *const state_names[] = {
    [CONN_HTTP] = "http",
    [CONN_OPEN] = "open",
    [CONN_CLOSING] = "closing",
    [CONN_CLOSED] = "closed",
};

const char *pl_conn_state_name(enum conn_state s)
{
    return (unsigned)s < PL_ARRAY_LEN(state_names) ? state_names[s] : "?";
}

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_shut(pl_conn_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void timer_arm(pl_conn_t *c, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(&c->priv->ev_timer, &tv);
}

/* Bytes sent to the peer but not yet acknowledged by it (or not yet sent). */
static uint32_t kernel_outq(int fd)
{
    int n = 0;
    if (ioctl(fd, SIOCOUTQ, &n) < 0 || n < 0)
        return 0;
    return (uint32_t)n;
}

/* Arms the CLOSING timer (on entering CLOSING and again once our queue is
 * flushed). close_timeout bounds the peer's silence, not the whole close:
 * what we queue last (a reply, a close frame) sits behind what the kernel
 * already holds for the peer, megabytes for a slow consumer, so as long as
 * the peer keeps taking bytes (the kernel's queue shrank by the time the
 * timer fires) the timer is armed again. One that stopped reading is
 * dropped at most close_timeout after it last took a byte. */
static void closing_arm(pl_conn_t *c)
{
    c->priv->close_mark = kernel_outq(c->priv->fd);
    timer_arm(c, c->w->cfg->close_timeout);
}

/* The only writer of c->state. */
static void conn_set_state(pl_conn_t *c, enum conn_state s)
{
    if (pl_log_level >= PL_LOG_DEBUG)
        pl_conn_log(c, PL_LOG_DEBUG, "state change\tfrom=%s to=%s", pl_conn_state_name(c->state),
                    pl_conn_state_name(s));
    assert(s > c->state || (c->state == CONN_HTTP && s == CONN_HTTP));
    c->state = s;
}

void pl_conn_log(pl_conn_t *c, int level, const char *fmt, ...)
{
    if (level > pl_log_level)
        return;
    char text[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int has_tab = strchr(text, '\t') != NULL;
    pl_log_write(level, "%s%sconn=%llu peer=%s%s%s", text, has_tab ? " " : "\t",
                 (unsigned long long)c->id, c->peer, c->user ? " user=" : "",
                 c->user ? c->user : "");
}

/* ---- output queue ---- */

/* Bytes queued on all of this worker's connections (a worker is a
 * process), and the most since the worker last asked (pl_conn_queued). */
static size_t queued_all, queued_peak;

static void queued_add(size_t n)
{
    queued_all += n;
    if (queued_all > queued_peak)
        queued_peak = queued_all;
}

static void queued_sub(size_t n)
{
    assert(queued_all >= n);
    queued_all -= n;
}

void pl_conn_queued(size_t *now, size_t *peak)
{
    *now = queued_all;
    *peak = queued_peak;
    queued_peak = queued_all;
}

static void out_ensure(pl_conn_t *c)
{
    struct pl_conn_private *p = c->priv;
    if (p->out == NULL)
        p->out = evbuffer_new();
    if (evbuffer_get_length(p->out) == 0)
        event_add(&p->ev_write, NULL);
}

/* The one path bytes take to the socket: append; the write callback
 * flushes everything queued during this loop pass in one writev. */
static void conn_send(pl_conn_t *c, const void *data, size_t len)
{
    out_ensure(c);
    evbuffer_add(c->priv->out, data, len);
    c->out_bytes += len;
    queued_add(len);
}

static void release_frame(const void *data, size_t len, void *arg)
{
    pl_frame_unref(arg);
}

static void conn_send_shared(pl_conn_t *c, pl_frame_t *f)
{
    out_ensure(c);
    evbuffer_add_reference(c->priv->out, f->data, f->len, release_frame, pl_frame_ref(f));
    c->out_bytes += f->len;
    queued_add(f->len);
}

/* Cuts the queue back to the unwritten rest of its head frame, so the
 * stream stays parseable, and frees the rest (dropping frame refs). */
static void out_trim(pl_conn_t *c)
{
    struct pl_conn_private *p = c->priv;
    if (p->out == NULL)
        return;
    size_t keep = p->head_left;
    struct evbuffer *nb = evbuffer_new();
    if (keep > 0)
        evbuffer_remove_buffer(p->out, nb, keep);
    evbuffer_free(p->out);
    p->out = nb;
    queued_sub(c->out_bytes - evbuffer_get_length(nb));
    c->out_bytes = evbuffer_get_length(nb);
    if (c->out_bytes == 0)
        event_del(&p->ev_write);
}

/* A client that stopped reading: its queue is cut back to the frame in
 * progress and the close frame queued behind it, so what it reads later is
 * whole frames, then 1013. Writing goes on; once the close frame is in the
 * kernel the socket is half-closed (linger, see after_flush), which sends
 * our FIN after the bytes the kernel still holds for the client. A close()
 * before that would lose the close frame, which is what close_timeout does
 * to a client that never reads again; an RST (close() with unread input)
 * would also destroy what the kernel holds, hence the lingering read. */
static void check_limit(pl_conn_t *c)
{
    if ((int64_t)c->out_bytes <= c->w->cfg->send_buffer_limit)
        return;
    size_t queued = c->out_bytes;
    out_trim(c);
    c->priv->linger = 1;
    pl_conn_close(c, PL_WS_CLOSE_TRY_AGAIN, "send buffer over limit\tqueued=%zu", queued);
}

static void send_ws(pl_conn_t *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t hdr[PL_WS_MAX_HEADER];
    size_t hlen = pl_ws_header(hdr, opcode, len);
    conn_send(c, hdr, hlen);
    if (len > 0)
        conn_send(c, payload, len);
    c->w->metrics->frames_out_total++;
}

void pl_conn_send_text(pl_conn_t *c, const char *payload, size_t len)
{
    if (c->state != CONN_OPEN)
        return;
    send_ws(c, PL_WS_TEXT, payload, len);
    check_limit(c);
}

void pl_conn_send_binary(pl_conn_t *c, const void *payload, size_t len)
{
    if (c->state != CONN_OPEN)
        return;
    send_ws(c, PL_WS_BINARY, payload, len);
    check_limit(c);
}

void pl_conn_send_frame(pl_conn_t *c, pl_frame_t *f)
{
    if (c->state != CONN_OPEN)
        return;
    conn_send_shared(c, f);
    c->w->metrics->frames_out_total++;
    check_limit(c);
}

/* Length of the server frame whose header starts at offset pos of out. */
static uint64_t frame_len_at(struct evbuffer *out, size_t pos)
{
    uint8_t h[PL_WS_MAX_HEADER] = {0};
    struct evbuffer_ptr ptr;
    evbuffer_ptr_set(out, &ptr, pos, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(out, &ptr, h, sizeof(h));
    uint64_t n = h[1] & 0x7f;
    if (n < 126)
        return 2 + n;
    if (n == 126)
        return 4 + ((uint64_t)h[2] << 8 | h[3]);
    uint64_t v = 0;
    for (int i = 2; i < 10; i++)
        v = v << 8 | h[i];
    return 10 + v;
}

/* Advances head_left over n bytes about to be drained from out. */
static void account_written(struct pl_conn_private *p, size_t n)
{
    if (!p->ws)
        return;
    size_t pos = 0;
    while (pos < n) {
        if (p->head_left == 0)
            p->head_left = frame_len_at(p->out, pos);
        size_t take = p->head_left < n - pos ? p->head_left : n - pos;
        p->head_left -= take;
        pos += take;
    }
}

/* Everything queued has been written. */
static void after_flush(pl_conn_t *c)
{
    struct pl_conn_private *p = c->priv;
    if (c->state != CONN_CLOSING)
        return;
    if (p->linger) {
        /* Lingering close: half-close and wait for the client's EOF, so
         * bytes still in flight from it cannot turn into an RST that
         * destroys our response or close frame. Bounded by the close
         * timer. Used after HTTP replies and after failing a WebSocket
         * (RFC 6455 7.1.7), where the input can no longer be parsed. */
        shutdown(p->fd, SHUT_WR);
        p->discard = 1;
    } else if (p->peer_closed) {
        conn_shut(c, PL_LOG_DEBUG, "close handshake done");
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    pl_conn_t *c = arg;
    struct pl_conn_private *p = c->priv;
    if (p->out == NULL || evbuffer_get_length(p->out) == 0) {
        event_del(&p->ev_write);
        return;
    }
    struct iovec iov[64];
    int n = evbuffer_peek(p->out, -1, NULL, (struct evbuffer_iovec *)iov, 64);
    if (n > 64)
        n = 64;
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_shut(c, PL_LOG_INFO, "writev() failed: %s", strerror(errno));
        return;
    }
    account_written(p, (size_t)w);
    evbuffer_drain(p->out, (size_t)w);
    c->out_bytes -= (size_t)w;
    queued_sub((size_t)w);
    c->w->metrics->bytes_out_total += (uint64_t)w;
    if (c->state == CONN_CLOSING)
        p->close_mark = w > UINT32_MAX - p->close_mark ? UINT32_MAX : p->close_mark + (uint32_t)w;
    if (evbuffer_get_length(p->out) == 0) {
        event_del(&p->ev_write);
        evbuffer_free(p->out);
        p->out = NULL;
        p->head_left = 0;
        assert(c->out_bytes == 0);
        if (c->state == CONN_CLOSING)
            closing_arm(c); /* from the last byte we handed over, not the first */
        after_flush(c);
    }
}

/* ---- close paths ---- */

/* Goes to CLOSED now: releases the socket, buffers and the module's
 * session, and hands the struct to the worker to free after this loop
 * pass. Logs the death line unless pl_conn_close already did. */
static void conn_shut(pl_conn_t *c, int level, const char *fmt, ...)
{
    struct pl_conn_private *p = c->priv;
    if (c->state == CONN_CLOSED)
        return;
    if (!p->logged && level <= pl_log_level) {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        pl_conn_log(c, level, "connection closed: %s\tstate=%s", why, pl_conn_state_name(c->state));
    }
    p->logged = 1;
    event_del(&p->ev_read);
    event_del(&p->ev_write);
    event_del(&p->ev_timer);
    close(p->fd);
    p->fd = -1;
    free(p->in);
    p->in = NULL;
    p->in_len = p->in_cap = 0;
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
    if (p->out) {
        evbuffer_free(p->out); /* drops shared frame references */
        p->out = NULL;
    }
    queued_sub(c->out_bytes);
    c->out_bytes = 0;
    if (p->ip_held) {
        pl_addr_t a;
        if (pl_addr_parse(c->peer, strlen(c->peer), &a) == 0)
            pl_iplimit_release(&a);
        p->ip_held = 0;
    }
    conn_set_state(c, CONN_CLOSED);
    if (p->opened) {
        p->opened = 0;
        const pl_ws_ops_t *ops = ops_of(c);
        if (ops->closed)
            ops->closed(c);
    }
    c->w->metrics->connections_open--;
    pl_worker_conn_closed(c->w, c);
}

void pl_conn_abort(pl_conn_t *c, const char *why)
{
    conn_shut(c, PL_LOG_INFO, "%s", why);
}

__attribute__((format(printf, 4, 0))) static void
conn_vclose(pl_conn_t *c, uint16_t code, const char *reason, const char *fmt, va_list ap)
{
    struct pl_conn_private *p = c->priv;
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
        return;
    if (!p->logged) {
        char why[512];
        vsnprintf(why, sizeof(why), fmt, ap);
        /* a peer-initiated close or a drain is routine; anything else is worth info */
        int level = (code == PL_WS_CLOSE_NORMAL || code == PL_WS_CLOSE_GOING_AWAY) ? PL_LOG_DEBUG
                                                                                   : PL_LOG_INFO;
        pl_conn_log(c, level, "connection closing: %s\tcode=%u state=%s", why, code,
                    pl_conn_state_name(c->state));
        p->logged = 1;
    }
    if (c->state == CONN_HTTP) {
        conn_shut(c, PL_LOG_INFO, "closed before upgrade");
        return;
    }
    if (code < 1000 || code == 1004 || code == 1005 || code == 1006 || code == 1015 || code >= 5000)
        code = PL_WS_CLOSE_INTERNAL; /* codes that must never be sent */
    uint8_t payload[2 + 123] = {(uint8_t)(code >> 8), (uint8_t)code};
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > sizeof(payload) - 2)
        rlen = sizeof(payload) - 2; /* callers pass short ASCII reasons */
    if (rlen)
        memcpy(payload + 2, reason, rlen);
    send_ws(c, PL_WS_CLOSE, payload, 2 + rlen);
    pl_metrics_close_code(c->w->metrics, code);
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
    conn_set_state(c, CONN_CLOSING);
    closing_arm(c);
}

void pl_conn_close(pl_conn_t *c, uint16_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_vclose(c, code, NULL, fmt, ap);
    va_end(ap);
}

void pl_conn_close_reason(pl_conn_t *c, uint16_t code, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_vclose(c, code, reason, fmt, ap);
    va_end(ap);
}

/* ---- HTTP ---- */

/* Queues a complete plain HTTP response and closes after writing it. */
static void http_reply(pl_conn_t *c, int status, const char *ctype, const void *body, size_t len,
                       const char *extra)
{
    struct pl_conn_private *p = c->priv;
    char head[512];
    size_t hlen = pl_http_head(head, sizeof(head), status, ctype, len, extra);
    conn_send(c, head, hlen);
    if (len > 0)
        conn_send(c, body, len);
    p->linger = 1;
    p->discard = 1;
    conn_set_state(c, CONN_CLOSING);
    closing_arm(c);
}

static void http_fail(pl_conn_t *c, int status, enum pl_hs_reason reason, const char *path,
                      size_t path_len)
{
    c->w->metrics->handshake_failures[reason]++;
    if (!c->priv->logged)
        pl_conn_log(c, status == 404 ? PL_LOG_DEBUG : PL_LOG_INFO,
                    "http request refused\tstatus=%d reason=%s path=\"%.*s\"", status,
                    pl_metrics_hs_reason_name(reason), (int)(path_len > 64 ? 64 : path_len),
                    path ? path : "");
    c->priv->logged = 1;
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, pl_http_reason(status));
    http_reply(c, status, "text/plain", body, (size_t)n,
               status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
}

/* Refused by a limit (metric, one line, 503 or 429). */
static void http_limit(pl_conn_t *c, int status, enum pl_limit limit)
{
    pl_metrics_limit(c->w->metrics, limit);
    unsigned suppressed;
    if (!c->priv->logged && pl_worker_refusal_log(c->w, &suppressed))
        pl_conn_log(c, PL_LOG_INFO, "connection refused: limit reached\tlimit=%s status=%d%s%.0u",
                    pl_metrics_limit_name(limit), status, suppressed ? " suppressed=" : "",
                    suppressed);
    c->priv->logged = 1;
    const char *body = status == 429 ? "too many connections from your address\n"
                                     : "server busy: too many connections\n";
    http_reply(c, status, "text/plain", body, strlen(body), "Retry-After: 5\r\n");
}

/* A trusted proxy's request: the client is the address its headers name
 * (or the proxy itself if they name none). c->peer becomes that address,
 * so every later log line of the connection shows the real client, and it
 * is counted for max_connections_per_ip. Returns -1 if refused. */
static int proxied_client(pl_conn_t *c, const pl_http_req_t *req)
{
    struct pl_conn_private *p = c->priv;
    p->proxied = 0; /* once per connection */
    pl_addr_t a;
    if (pl_addr_forwarded(pl_worker_trusted(c->w), req->forwarded_for, req->forwarded_for_len,
                          req->real_ip, req->real_ip_len, &a) == 0) {
        char proxy[sizeof(c->peer)];
        memcpy(proxy, c->peer, sizeof(proxy));
        pl_addr_format(&a, c->peer);
        if (pl_log_level >= PL_LOG_DEBUG)
            pl_conn_log(c, PL_LOG_DEBUG, "client address from proxy headers\tproxy=%s", proxy);
    } else if (pl_addr_parse(c->peer, strlen(c->peer), &a) < 0) {
        return 0;
    }
    int64_t limit = c->w->cfg->max_connections_per_ip;
    if (limit <= 0)
        return 0;
    enum pl_iplimit_result r = pl_iplimit_acquire(&a, (unsigned)limit);
    if (r == PL_IPLIMIT_OVER) {
        http_limit(c, 429, PL_LIMIT_MAX_CONNECTIONS_PER_IP);
        return -1;
    }
    p->ip_held = r == PL_IPLIMIT_OK;
    return 0;
}

/* Handles a complete request head; returns the bytes it used. */
static size_t http_request(pl_conn_t *c, const pl_http_req_t *req)
{
    struct pl_conn_private *p = c->priv;
    const pl_gw_config_t *cfg = c->w->cfg;
    if (p->proxied && proxied_client(c, req) < 0)
        return req->head_len;
    if (pl_http_path_is(req, "/healthz") || pl_http_path_is(req, "/metrics")) {
        if (!req->is_get) {
            http_fail(c, 405, PL_HS_METHOD, req->path, req->path_len);
            return req->head_len;
        }
        p->logged = 1; /* probes are routine: no death line */
        if (req->path[1] == 'h') {
            if (c->w->draining)
                http_reply(c, 503, "text/plain", "draining\n", 9, NULL);
            else
                http_reply(c, 200, "text/plain", "ok\n", 3, NULL);
        } else {
            struct evbuffer *body = evbuffer_new();
            pl_metrics_render(body);
            size_t len = evbuffer_get_length(body);
            char head[512];
            size_t hlen =
                pl_http_head(head, sizeof(head), 200, "text/plain; version=0.0.4", len, NULL);
            conn_send(c, head, hlen);
            out_ensure(c);
            evbuffer_add_buffer(p->out, body);
            c->out_bytes += len;
            queued_add(len);
            evbuffer_free(body);
            p->linger = 1;
            p->discard = 1;
            conn_set_state(c, CONN_CLOSING);
            closing_arm(c);
        }
        return req->head_len;
    }
    unsigned ops = pl_ops_find(req);
    if (ops == 0) {
        http_fail(c, 404, PL_HS_NOT_FOUND, req->path, req->path_len);
        return req->head_len;
    }
    char accept[29];
    enum pl_hs_reason reason;
    int status = pl_http_check_upgrade(req, cfg->origins, accept, &reason);
    if (status != 0) {
        http_fail(c, status, reason, req->path, req->path_len);
        return req->head_len;
    }
    char resp[256];
    size_t rlen = pl_http_upgrade_response(resp, sizeof(resp), accept);
    assert(p->out == NULL);
    conn_send(c, resp, rlen);
    p->ws = 1;
    p->head_left = rlen; /* the 101 is the head "frame" of the queue */
    p->ops = ops;
    pl_ws_parser_init(&p->parser, (uint64_t)cfg->max_message_size);
    conn_set_state(c, CONN_OPEN);
    timer_arm(c, cfg->ping_interval);
    pl_conn_log(c, PL_LOG_DEBUG, "websocket open\tpath=\"%.*s\"", (int)req->path_len, req->path);
    if (c->w->draining) {
        /* Accepted just before the drain began: finish the handshake and
         * say "going away" like to every other client, so it reconnects
         * (to the worker that replaces us) instead of seeing an error. */
        pl_conn_close(c, PL_WS_CLOSE_GOING_AWAY, "server draining");
        return req->head_len;
    }
    p->opened = 1;
    if (pl_ops_by_id[ops]->open)
        pl_ops_by_id[ops]->open(c);
    return req->head_len;
}

/* ---- WebSocket frames ---- */

/* One complete message to the module (on_frame has already refused
 * binary on a text-only path). */
static void deliver(pl_conn_t *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    const pl_ws_ops_t *ops = ops_of(c);
    if (opcode == PL_WS_TEXT)
        ops->message(c, data, len);
    else
        ops->binary(c, data, len);
}

static void on_frame(pl_conn_t *c, const pl_ws_frame_t *f)
{
    struct pl_conn_private *p = c->priv;
    switch (f->opcode) {
    case PL_WS_PING:
        if (c->state == CONN_OPEN) {
            send_ws(c, PL_WS_PONG, f->payload, (size_t)f->len);
            check_limit(c);
        }
        return;
    case PL_WS_PONG:
        return; /* any frame counts as life; see on_read */
    case PL_WS_CLOSE:
        p->peer_closed = 1;
        p->discard = 1; /* nothing may follow a close frame */
        if (c->state == CONN_OPEN) {
            uint16_t code = f->close_code == 1005 ? PL_WS_CLOSE_NORMAL : f->close_code;
            pl_conn_close(c, code, "peer closed\tpeer_code=%u", f->close_code);
        } else if (p->out == NULL) {
            conn_shut(c, PL_LOG_DEBUG, "close handshake done");
        }
        return;
    default:
        break;
    }
    if (c->state != CONN_OPEN)
        return; /* data after our close frame is dropped */
    if (f->msg_opcode == PL_WS_BINARY && ops_of(c)->binary == NULL) {
        pl_conn_close(c, PL_WS_CLOSE_UNSUPPORTED, "binary message on a text-only path\tmodule=%s",
                      ops_of(c)->name);
        return;
    }
    if (f->opcode != PL_WS_CONT && f->fin) {
        deliver(c, f->opcode, f->payload, (size_t)f->len); /* common case: no copy */
        return;
    }
    /* fragmented: reassemble (the codec bounds the total by max_message) */
    if (p->msg_len + f->len > p->msg_cap) {
        size_t cap = p->msg_cap ? p->msg_cap : 1024;
        while (cap < p->msg_len + f->len)
            cap *= 2;
        p->msg = pl_xrealloc(p->msg, cap);
        p->msg_cap = (uint32_t)cap;
    }
    if (f->len > 0)
        memcpy(p->msg + p->msg_len, f->payload, (size_t)f->len);
    p->msg_len += (uint32_t)f->len;
    if (f->fin) {
        uint8_t *msg = p->msg;
        size_t len = p->msg_len;
        p->msg = NULL;
        p->msg_len = p->msg_cap = 0;
        deliver(c, f->msg_opcode, msg ? msg : (uint8_t *)"", len);
        free(msg);
    }
}

/* Parses and dispatches what buf holds; returns the bytes consumed. */
static size_t process(pl_conn_t *c, uint8_t *buf, size_t len)
{
    struct pl_conn_private *p = c->priv;
    size_t off = 0;
    while (off < len && c->state != CONN_CLOSED && !p->discard) {
        if (c->state == CONN_HTTP) {
            pl_http_req_t req;
            int r = pl_http_parse((const char *)buf + off, len - off, &req);
            if (r == PL_AGAIN)
                break;
            if (r != PL_OK) {
                http_fail(c, r, r == 431 ? PL_HS_TOO_LARGE : PL_HS_MALFORMED, NULL, 0);
                return len;
            }
            off += http_request(c, &req);
            continue;
        }
        pl_ws_frame_t f;
        size_t used = 0;
        int r = pl_ws_parse(&p->parser, buf + off, len - off, &f, &used);
        if (r == PL_AGAIN)
            break;
        if (r != PL_OK) {
            p->discard = 1; /* the stream cannot be trusted after a framing error */
            p->linger = 1;
            if (c->state != CONN_OPEN)
                return len;
            if (r == PL_WS_CLOSE_TOO_BIG && p->msg_limit >= 0) {
                /* over the module's per-connection limit (e.g. before auth) */
                pl_metrics_limit(c->w->metrics, p->msg_limit);
                pl_conn_close(c, (uint16_t)r, "limit reached\tlimit=%s max=%llu",
                              pl_metrics_limit_name(p->msg_limit),
                              (unsigned long long)p->parser.max_message);
            } else {
                pl_conn_close(c, (uint16_t)r, "websocket protocol error");
            }
            return len;
        }
        off += used;
        c->w->metrics->frames_in_total++;
        on_frame(c, &f);
    }
    return p->discard ? len : off;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    pl_conn_t *c = arg;
    struct pl_conn_private *p = c->priv;
    uint8_t *buf;
    size_t cap, used;
    if (p->in_len == 0) {
        buf = pl_worker_scratch(c->w, &cap);
        used = 0;
    } else {
        if (p->in_cap - p->in_len < 4096) {
            size_t ncap = (size_t)p->in_cap * 2;
            if (ncap < (size_t)p->in_len + 16384)
                ncap = (size_t)p->in_len + 16384;
            p->in = pl_xrealloc(p->in, ncap);
            p->in_cap = (uint32_t)ncap;
        }
        buf = p->in;
        cap = p->in_cap;
        used = p->in_len;
    }
    ssize_t n = read(fd, buf + used, cap - used);
    if (n == 0) {
        if (c->state == CONN_OPEN)
            conn_shut(c, PL_LOG_INFO, "peer closed the connection without a close frame");
        else
            conn_shut(c, PL_LOG_DEBUG, "peer closed the connection");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_shut(c, PL_LOG_INFO, "read() failed: %s", strerror(errno));
        return;
    }
    c->w->metrics->bytes_in_total += (uint64_t)n;
    p->last_rx_ms = (uint32_t)pl_mono_ms();
    p->awaiting_pong = 0; /* any bytes from the peer count as life */
    if (p->discard) {
        p->in_len = 0;
        free(p->in);
        p->in = NULL;
        p->in_cap = 0;
        return;
    }
    size_t total = used + (size_t)n;
    size_t done = process(c, buf, total);
    if (c->state == CONN_CLOSED)
        return;
    size_t left = p->discard ? 0 : total - done;
    if (left > 0 && left > (size_t)p->parser.max_message + 65536) {
        p->discard = 1;
        p->linger = 1;
        pl_conn_close(c, PL_WS_CLOSE_TOO_BIG, "input buffer over limit");
        left = 0;
    }
    if (buf != p->in) {
        if (left > 0) {
            size_t ncap = left < 2048 ? 2048 : left;
            p->in = pl_xmalloc(ncap);
            p->in_cap = (uint32_t)ncap;
            memcpy(p->in, buf + done, left);
        }
    } else if (left > 0) {
        memmove(p->in, p->in + done, left);
        if (p->in_cap > 65536 && left <= p->in_cap / 4) { /* give back a big message's buffer */
            size_t ncap = left < 2048 ? 2048 : left;
            p->in = pl_xrealloc(p->in, ncap);
            p->in_cap = (uint32_t)ncap;
        }
    } else {
        free(p->in);
        p->in = NULL;
        p->in_cap = 0;
    }
    p->in_len = (uint32_t)left;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    pl_conn_t *c = arg;
    struct pl_conn_private *p = c->priv;
    const pl_gw_config_t *cfg = c->w->cfg;
    switch (c->state) {
    case CONN_HTTP:
        c->w->metrics->handshake_failures[PL_HS_TIMEOUT]++;
        conn_shut(c, PL_LOG_INFO, "handshake timeout");
        return;
    case CONN_OPEN: {
        uint32_t now = (uint32_t)pl_mono_ms();
        if (p->awaiting_pong) {
            /* Silent since our ping: the peer or the path is gone. Drop it
             * without a close handshake (nobody would answer it). */
            conn_shut(c, PL_LOG_INFO, "ping timeout\tsilent_ms=%llu",
                      (unsigned long long)(uint32_t)(now - p->last_rx_ms));
            return;
        }
        uint64_t idle = (uint32_t)(now - p->last_rx_ms);
        if (idle + 5 < (uint64_t)cfg->ping_interval) {
            timer_arm(c, cfg->ping_interval - (int64_t)idle);
            return;
        }
        send_ws(c, PL_WS_PING, NULL, 0);
        p->awaiting_pong = 1;
        timer_arm(c, cfg->ping_timeout);
        return;
    }
    case CONN_CLOSING:
        if (kernel_outq(p->fd) < p->close_mark) {
            closing_arm(c); /* still reading: see closing_arm */
            return;
        }
        conn_shut(c, p->linger ? PL_LOG_DEBUG : PL_LOG_INFO, "close timeout");
        return;
    case CONN_CLOSED:
        return;
    }
}

/* ---- lifecycle ---- */

pl_conn_t *pl_conn_new(pl_worker_t *w, int fd, const struct sockaddr *sa, unsigned flags)
{
    conn_full_t *full = pl_xcalloc(1, sizeof(*full));
    pl_conn_t *c = &full->pub;
    struct pl_conn_private *p = &full->priv;
    c->priv = p;
    c->w = w;
    c->id = pl_worker_next_id(w);
    c->state = CONN_HTTP;
    p->fd = fd;
    p->msg_limit = -1;
    p->proxied = (flags & PL_CONN_PROXIED) != 0;
    p->ip_held = (flags & PL_CONN_IP_HELD) != 0;
    p->last_rx_ms = (uint32_t)pl_mono_ms();
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host, port);
    } else {
        snprintf(c->peer, sizeof(c->peer), "unix");
    }
    event_assign(&p->ev_read, w->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&p->ev_write, w->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    event_assign(&p->ev_timer, w->base, -1, 0, on_timer, c);
    event_add(&p->ev_read, NULL);
    timer_arm(c, w->cfg->handshake_timeout);
    w->metrics->connections_open++;
    w->metrics->connections_total++;
    pl_worker_conn_add(w, c);
    if (pl_log_level >= PL_LOG_DEBUG)
        pl_conn_log(c, PL_LOG_DEBUG, "connection accepted");
    return c;
}

void pl_conn_set_max_message(pl_conn_t *c, size_t max, int limit_id)
{
    if (c->state != CONN_OPEN)
        return;
    c->priv->parser.max_message = (uint64_t)max;
    c->priv->msg_limit = limit_id;
}

void pl_conn_go_away(pl_conn_t *c)
{
    if (c->state == CONN_OPEN)
        pl_conn_close(c, PL_WS_CLOSE_GOING_AWAY, "server draining");
    else if (c->state == CONN_HTTP && c->priv->in_len == 0)
        timer_arm(c, 1000); /* just accepted: its request is on the way, but don't wait long */
}

void pl_conn_free(pl_conn_t *c)
{
    assert(c->state == CONN_CLOSED);
    free(container_of(c, conn_full_t, pub));
}

void pl_conn_list_add(struct pl_conn_list *head, pl_conn_t *c)
{
    LIST_INSERT_HEAD(head, c, priv->link);
}

void pl_conn_list_del(pl_conn_t *c)
{
    LIST_REMOVE(c, priv->link);
}

pl_conn_t *pl_conn_list_next(const pl_conn_t *c)
{
    return LIST_NEXT(c, priv->link);
}
