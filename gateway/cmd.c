/*
 * Chat protocol v1 command dispatch. Placeholder until the chat protocol
 * lands: it accepts the WebSocket and closes chat traffic with 1003.
 */
#include "conn.h"
#include "proto.h"
#include "worker.h"

int pl_proto_worker_start(struct pl_worker *w)
{
    (void)w;
    return 0;
}

void pl_proto_worker_drain(struct pl_worker *w)
{
    (void)w;
}

void pl_proto_worker_stop(struct pl_worker *w)
{
    (void)w;
}

void pl_proto_open(struct pl_conn *c)
{
    (void)c;
}

void pl_proto_message(struct pl_conn *c, const uint8_t *text, size_t len)
{
    (void)text;
    (void)len;
    pl_conn_close(c, 1003, "chat protocol not implemented yet");
}

void pl_proto_closed(struct pl_conn *c)
{
    (void)c;
}
