/*
 * RFC 6455 client for parley-load. The server's frames are parsed here
 * rather than with pl_ws_parse (which is the server-side parser and rejects
 * unmasked frames); frames we send are built by pl_ws_client_frame. The
 * handshake answer is checked with pl_ws_accept_key so a gateway that gets
 * the accept key wrong fails the benchmark instead of passing it.
 */
#include "wsclient.h"

#include "util.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest message we accept from a server; the bench never expects more. */
#define MAX_MESSAGE (16u << 20)
/* Largest HTTP response header block. */
#define MAX_RESPONSE 8192

enum wsc_state {
    WSC_CONNECTING, /* TCP connect in progress; connect/upgrade timeout armed */
    WSC_UPGRADING,  /* request sent, waiting for 101; same timeout */
    WSC_OPEN,       /* frames flow both ways; no timeout */
    WSC_CLOSING,    /* close frame sent or received; close timeout armed */
};

struct pl_wsclient {
    struct bufferevent *bev;
    enum wsc_state state;
    pl_wsclient_cbs_t cbs;
    void *arg;
    const pl_wsclient_target_t *target; /* caller's; outlives the connection */
    char accept[29];                    /* expected Sec-WebSocket-Accept */
    struct evbuffer *msg;               /* fragments of an unfinished data message, or NULL */
    uint8_t msg_opcode;                 /* TEXT/BINARY of that message */
    uint8_t sent_close;                 /* we queued a close frame */
    uint8_t got_close;                  /* the server's close frame arrived */
    int close_code;                     /* code from the server's close frame */
};

/* Masks do not need to be unpredictable against a benchmark target, only
 * to vary, so a xorshift generator is enough. */
static uint32_t rng_state;

static uint32_t rng_next(void)
{
    if (rng_state == 0)
        pl_random_bytes(&rng_state, sizeof(rng_state));
    rng_state |= 1;
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

const char *pl_wsclient_end_name(enum pl_wsclient_end why)
{
    static const char *names[] = {
        [WSC_END_CONNECT] = "connect",   [WSC_END_HANDSHAKE] = "handshake",
        [WSC_END_PROTOCOL] = "protocol", [WSC_END_EOF] = "eof",
        [WSC_END_CLOSED] = "closed",     [WSC_END_TIMEOUT] = "close_timeout",
    };
    return names[why];
}

static void finish(pl_wsclient_t *c, enum pl_wsclient_end why)
{
    c->cbs.on_close(c, c->arg, why, c->close_code);
    bufferevent_free(c->bev);
    if (c->msg)
        evbuffer_free(c->msg);
    free(c);
}

static void set_timeout(pl_wsclient_t *c, int ms)
{
    if (ms <= 0) {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void send_frame(pl_wsclient_t *c, int opcode, const void *p, size_t n)
{
    uint8_t stack[4096 + 14];
    uint8_t *out = n + 14 <= sizeof(stack) ? stack : pl_xmalloc(n + 14);
    size_t len = pl_ws_client_frame(out, (uint8_t)opcode, 1, p, n, rng_next());
    bufferevent_write(c->bev, out, len);
    if (out != stack)
        free(out);
}

int pl_wsclient_send(pl_wsclient_t *c, int opcode, const void *p, size_t n)
{
    if (c->state != WSC_OPEN)
        return -1;
    send_frame(c, opcode, p, n);
    return 0;
}

void pl_wsclient_close(pl_wsclient_t *c, uint16_t code, int timeout_ms)
{
    if (c->state == WSC_CLOSING)
        return;
    if (c->state != WSC_OPEN) {
        /* Nothing to hand-shake yet: drop the TCP connection on the next
         * timeout tick rather than freeing under the caller. */
        c->state = WSC_CLOSING;
        set_timeout(c, 1);
        return;
    }
    uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(c, PL_WS_CLOSE, payload, 2);
    c->sent_close = 1;
    c->state = WSC_CLOSING;
    set_timeout(c, timeout_ms);
}

size_t pl_wsclient_pending(const pl_wsclient_t *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Handles a control frame. Returns 0 to keep reading, 1 if the close
 * handshake is complete on our side (the caller finishes once the close
 * reply is written). */
static int on_control(pl_wsclient_t *c, int opcode, const uint8_t *p, size_t n)
{
    if (opcode == PL_WS_PING) {
        if (!c->sent_close)
            send_frame(c, PL_WS_PONG, p, n);
        return 0;
    }
    if (opcode == PL_WS_PONG)
        return 0;
    /* PL_WS_CLOSE */
    c->got_close = 1;
    c->close_code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
    if (!c->sent_close) {
        /* Echo the code as RFC 6455 5.5.1 suggests; 1005 may not be sent. */
        uint8_t reply[2] = {p[0], n >= 2 ? p[1] : 0};
        send_frame(c, PL_WS_CLOSE, reply, n >= 2 ? 2 : 0);
        c->sent_close = 1;
    }
    c->state = WSC_CLOSING;
    return 1;
}

/* Reads as many complete frames as the input holds. Returns 0 to go on,
 * 1 when the close handshake is done, -1 on a protocol error. */
static int read_frames(pl_wsclient_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2)
            return 0;
        uint8_t h[10];
        evbuffer_copyout(in, h, avail < sizeof(h) ? avail : sizeof(h));
        int fin = h[0] & 0x80, opcode = h[0] & 0x0F;
        if ((h[0] & 0x70) || (h[1] & 0x80))
            return -1; /* reserved bits or a masked server frame */
        uint64_t len = h[1] & 0x7F;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                return 0;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return 0;
            len = 0;
            for (int i = 2; i < 10; i++)
                len = len << 8 | h[i];
            hl = 10;
        }
        if (len > MAX_MESSAGE)
            return -1;
        int control = opcode >= 0x8;
        if (control && (!fin || len > 125))
            return -1;
        if (avail < hl + len)
            return 0;
        evbuffer_drain(in, hl);
        static const uint8_t empty[1];
        const uint8_t *p = len ? evbuffer_pullup(in, (ev_ssize_t)len) : empty;
        int rc = 0;
        if (control) {
            if (opcode != PL_WS_PING && opcode != PL_WS_PONG && opcode != PL_WS_CLOSE)
                return -1;
            rc = on_control(c, opcode, p, len);
        } else if (opcode == PL_WS_CONT) {
            if (!c->msg)
                return -1;
            evbuffer_add(c->msg, p, len);
            if (evbuffer_get_length(c->msg) > MAX_MESSAGE)
                return -1;
            if (fin) {
                size_t mlen = evbuffer_get_length(c->msg);
                const uint8_t *m = mlen ? evbuffer_pullup(c->msg, -1) : empty;
                if (c->state == WSC_OPEN)
                    c->cbs.on_message(c, c->arg, c->msg_opcode, m, mlen);
                evbuffer_free(c->msg);
                c->msg = NULL;
            }
        } else if (opcode == PL_WS_TEXT || opcode == PL_WS_BINARY) {
            if (c->msg)
                return -1; /* new message inside a fragmented one */
            if (fin) {
                if (c->state == WSC_OPEN)
                    c->cbs.on_message(c, c->arg, opcode, p, len);
            } else {
                c->msg = evbuffer_new();
                c->msg_opcode = (uint8_t)opcode;
                evbuffer_add(c->msg, p, len);
            }
        } else {
            return -1;
        }
        evbuffer_drain(in, len);
        if (rc)
            return rc;
    }
}

/* Parses the 101 response once its header block is complete. Returns 0
 * when open, PL_AGAIN if more bytes are needed, -1 on failure. */
static int read_upgrade(pl_wsclient_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return evbuffer_get_length(in) > MAX_RESPONSE ? -1 : PL_AGAIN;
    size_t hlen = (size_t)end.pos + 4;
    char *resp = pl_xmalloc(hlen + 1);
    evbuffer_remove(in, resp, hlen);
    resp[hlen] = '\0';
    int ok = strncmp(resp, "HTTP/1.1 101", 12) == 0;
    char *acc = ok ? strcasestr(resp, "\r\nSec-WebSocket-Accept:") : NULL;
    if (acc) {
        acc += 23;
        while (*acc == ' ' || *acc == '\t')
            acc++;
        ok = strncmp(acc, c->accept, 28) == 0 && (acc[28] == '\r' || acc[28] == ' ');
    } else {
        ok = 0;
    }
    free(resp);
    return ok ? 0 : -1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    pl_wsclient_t *c = arg;
    if (c->state == WSC_UPGRADING) {
        int rc = read_upgrade(c);
        if (rc == PL_AGAIN)
            return;
        if (rc < 0) {
            finish(c, WSC_END_HANDSHAKE);
            return;
        }
        c->state = WSC_OPEN;
        set_timeout(c, 0);
        c->cbs.on_open(c, c->arg);
    }
    int rc = read_frames(c);
    if (rc < 0) {
        finish(c, WSC_END_PROTOCOL);
    } else if (rc == 1 && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        finish(c, WSC_END_CLOSED);
    } else if (rc == 1) {
        /* Wait for the close reply to drain; on_write finishes. */
        bufferevent_disable(bev, EV_READ);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    pl_wsclient_t *c = arg;
    if (c->got_close && c->sent_close)
        finish(c, WSC_END_CLOSED);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    pl_wsclient_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        uint8_t nonce[16];
        for (int i = 0; i < 4; i++) {
            uint32_t r = rng_next();
            memcpy(nonce + 4 * i, &r, 4);
        }
        char key[25];
        EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
        pl_ws_accept_key(key, 24, c->accept);
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            c->target->path, c->target->host, key);
        c->state = WSC_UPGRADING;
        return;
    }
    if (c->state == WSC_CONNECTING)
        finish(c, WSC_END_CONNECT);
    else if (c->state == WSC_UPGRADING)
        finish(c, WSC_END_HANDSHAKE);
    else if (c->got_close)
        finish(c, WSC_END_CLOSED);
    else if ((what & BEV_EVENT_TIMEOUT) && c->sent_close)
        finish(c, WSC_END_TIMEOUT);
    else
        finish(c, WSC_END_EOF);
}

pl_wsclient_t *pl_wsclient_connect(struct event_base *base, const pl_wsclient_target_t *t,
                                   const struct sockaddr_in *src, int timeout_ms,
                                   const pl_wsclient_cbs_t *cbs, void *arg)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) {
        /* Let connect() pick the port so the 4-tuple, not the source
         * address alone, has to be unique. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) < 0) {
            close(fd);
            return NULL;
        }
    }
    pl_wsclient_t *c = pl_xcalloc(1, sizeof(*c));
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->cbs = *cbs;
    c->arg = arg;
    c->target = t;
    c->state = WSC_CONNECTING;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    set_timeout(c, timeout_ms);
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&t->addr, sizeof(t->addr)) <
        0) {
        bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    return c;
}

int pl_wsclient_parse_url(const char *url, pl_wsclient_target_t *t)
{
    memset(t, 0, sizeof(*t));
    if (strncmp(url, "ws://", 5) != 0)
        return -1;
    url += 5;
    const char *slash = strchr(url, '/');
    size_t hostlen = slash ? (size_t)(slash - url) : strlen(url);
    if (hostlen == 0 || hostlen >= sizeof(t->host))
        return -1;
    memcpy(t->host, url, hostlen);
    snprintf(t->path, sizeof(t->path), "%s", slash ? slash : "/");
    char ip[64];
    memcpy(ip, t->host, hostlen + 1);
    char *colon = strrchr(ip, ':');
    int port = 80;
    if (colon) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    if (port <= 0 || port > 65535)
        return -1;
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, ip, &t->addr.sin_addr) == 1 ? 0 : -1;
}
