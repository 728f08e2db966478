/*
 * A worker process: its own libevent loop, its listening socket (one per
 * worker, SO_REUSEPORT), its connections, and graceful drain.
 *
 * What a module on a WebSocket path (ops.h) sees of it: the fields below
 * are its to read; priv belongs to worker.c. The transport's own calls
 * (pl_worker_run and the rest) are in net_private.h.
 */
#ifndef PL_WORKER_H
#define PL_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "options.h"

struct event_base;
struct pl_metrics;

/* A worker's exit status when it cannot run with its configuration (a
 * module's worker_start failed: e.g. a Redis URL the store cannot use).
 * The master does not respawn it: it logs once, stops the other workers
 * and exits with this status too (master.c). Any other non-zero status is
 * a crash and is respawned with backoff. */
#define PL_WORKER_EXIT_CONFIG 2

typedef struct pl_worker {
    struct event_base *base;        /* the worker's event loop */
    const pl_gw_config_t *cfg;      /* read-only after fork */
    int index;                      /* worker slot 0..N-1 */
    const char *node_id;            /* cfg->node_id or the host name */
    struct pl_metrics *metrics;     /* this worker's slot in the shared metrics page */
    int draining;                   /* set on SIGTERM: stop accepting, close 1001 */
    size_t max_conns;               /* max_connections in effect (what the configured value,
                                       RLIMIT_NOFILE and the fd reserve allow) */
    struct pl_worker_private *priv; /* worker.c's (opaque here) */
} pl_worker_t;

#endif
