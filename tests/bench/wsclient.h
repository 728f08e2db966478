/*
 * Client side of RFC 6455 for the load generator: connects (optionally
 * from a chosen source address), performs the HTTP upgrade and checks
 * Sec-WebSocket-Accept, sends masked frames, reads the server's unmasked
 * frames (7/16/64-bit lengths, fragmented messages), answers pings and
 * takes part in the close handshake. One libevent bufferevent per
 * connection; no threads.
 */
#ifndef PL_WSCLIENT_H
#define PL_WSCLIENT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct pl_wsclient pl_wsclient_t;

/* Where to connect: address, Host header and request path. */
typedef struct pl_wsclient_target {
    struct sockaddr_in addr;
    char host[64]; /* "127.0.0.1:8080", sent as Host */
    char path[128];
} pl_wsclient_target_t;

/* Why a connection ended (argument of on_close). */
enum pl_wsclient_end {
    WSC_END_CONNECT,   /* TCP connect failed */
    WSC_END_HANDSHAKE, /* no or bad 101 response, or handshake timeout */
    WSC_END_PROTOCOL,  /* the server broke RFC 6455 framing */
    WSC_END_EOF,       /* TCP closed without a close handshake */
    WSC_END_CLOSED,    /* close handshake completed (code says who/why) */
    WSC_END_TIMEOUT,   /* our close was not answered in time */
};

typedef struct pl_wsclient_cbs {
    /* The upgrade succeeded; frames may be sent now. */
    void (*on_open)(pl_wsclient_t *c, void *arg);
    /* One complete text or binary message. p is valid only during the call.
     * The callback may send and may call pl_wsclient_close(), nothing else. */
    void (*on_message)(pl_wsclient_t *c, void *arg, int opcode, const uint8_t *p, size_t n);
    /* The connection is gone (any cause, exactly once); c is freed right
     * after the call returns. code is the close code received (or 0). */
    void (*on_close)(pl_wsclient_t *c, void *arg, enum pl_wsclient_end why, int code);
} pl_wsclient_cbs_t;

/* Starts a non-blocking connect and upgrade. src (may be NULL) is bound
 * before connecting, with the port left to connect() so one source address
 * can serve many destinations. timeout_ms bounds connect + upgrade. Returns
 * NULL (after nothing was allocated) if the socket could not be created;
 * later failures arrive through on_close. */
pl_wsclient_t *pl_wsclient_connect(struct event_base *base, const pl_wsclient_target_t *t,
                                   const struct sockaddr_in *src, int timeout_ms,
                                   const pl_wsclient_cbs_t *cbs, void *arg);

/* Queues one masked FIN frame. Returns 0, or -1 if the connection is not
 * open (upgrading or closing). */
int pl_wsclient_send(pl_wsclient_t *c, int opcode, const void *p, size_t n);

/* Starts the close handshake with code; on_close follows when the server
 * answers, closes TCP, or timeout_ms passes. No-op if already closing. */
void pl_wsclient_close(pl_wsclient_t *c, uint16_t code, int timeout_ms);

/* Bytes queued for writing but not yet taken by the kernel. */
size_t pl_wsclient_pending(const pl_wsclient_t *c);

/* Parses "ws://host:port/path" (host must be an IPv4 literal). Returns 0 or
 * -1. */
int pl_wsclient_parse_url(const char *url, pl_wsclient_target_t *t);

/* Human name of an end reason. */
const char *pl_wsclient_end_name(enum pl_wsclient_end why);

#endif
