/*
 * A worker process: its own libevent loop, its listening socket (one per
 * worker, SO_REUSEPORT), its connections, and graceful drain.
 *
 * Fields above the marker are the protocol layer's to read (and proto to
 * own); the rest belong to worker.c.
 */
#ifndef PL_WORKER_H
#define PL_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "options.h"

struct event_base;
struct pl_metrics;

typedef struct pl_worker {
    struct event_base *base;    /* the worker's event loop */
    const pl_gw_config_t *cfg;  /* read-only after fork */
    int index;                  /* worker slot 0..N-1 */
    const char *node_id;        /* cfg->node_id or the host name */
    struct pl_metrics *metrics; /* this worker's slot in the shared metrics page */
    int draining;               /* set on SIGTERM: stop accepting, close 1001 */
    void *proto;                /* protocol layer's per-worker state (bus, rooms) */
    /* ---- worker.c private fields below ---- */
    struct pl_worker_private *priv;
} pl_worker_t;

/* Runs a worker on an already bound, listening fd until it has drained.
 * Returns the process exit status. */
int pl_worker_run(const pl_gw_config_t *cfg, int index, int listen_fd, struct pl_metrics *metrics);

/* ---- worker.c private API (conn.c <-> worker.c) ---- */

struct pl_conn;

/* Links a new connection on the open list and counts it. */
void pl_worker_conn_add(pl_worker_t *w, struct pl_conn *c);
/* Moves a connection that just became CLOSED to the list freed at the
 * end of the loop pass. */
void pl_worker_conn_closed(pl_worker_t *w, struct pl_conn *c);
/* A per-worker read buffer for connections with no pending input; its
 * contents are only valid during one read callback. */
uint8_t *pl_worker_scratch(pl_worker_t *w, size_t *cap);
/* Next connection id. */
uint64_t pl_worker_next_id(pl_worker_t *w);

#endif
