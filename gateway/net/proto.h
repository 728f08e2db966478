/*
 * The seam between the transport (conn.c, worker.c) and the chat protocol
 * (cmd.c and friends). The transport calls these; the protocol answers
 * through pl_conn_send_text/pl_conn_send_frame/pl_conn_close.
 */
#ifndef PL_PROTO_H
#define PL_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct pl_conn;
struct pl_worker;

/* Worker lifecycle: after the event base exists / before it is freed.
 * start returns 0 or -1 (the worker then exits non-zero). */
int pl_proto_worker_start(struct pl_worker *w);
/* Worker begins draining (stop taking new work, keep delivering). */
void pl_proto_worker_drain(struct pl_worker *w);
void pl_proto_worker_stop(struct pl_worker *w);

/* A WebSocket on the chat path (/ws) has just opened. */
void pl_proto_open(struct pl_conn *c);
/* One complete, UTF-8-validated text message from the client. */
void pl_proto_message(struct pl_conn *c, const uint8_t *text, size_t len);
/* The connection is going away (any reason); release c->session. Called
 * exactly once for every connection that got pl_proto_open. */
void pl_proto_closed(struct pl_conn *c);

#endif
