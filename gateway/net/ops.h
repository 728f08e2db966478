/*
 * The seam between the transport and what runs over a WebSocket: a module
 * (the chat protocol on /ws, the echo endpoint) fills a pl_ws_ops_t and
 * registers it for a request path. The transport calls the hooks; the
 * module answers through conn.h (pl_conn_send_text, pl_conn_send_frame,
 * pl_conn_close) and keeps its per-connection state in c->session.
 *
 * The table is filled in the master before it forks workers, and filled
 * again after a reload, so each worker inherits a table that no longer
 * changes while it runs. A worker is a process: a module keeps its
 * per-worker state in its own statics, set up by worker_start.
 */
#ifndef PL_OPS_H
#define PL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "worker.h"

typedef struct pl_ws_ops {
    const char *name; /* the module, for logs ("chat", "echo") */

    /* Per worker, called once for every registered module (a table
     * registered for several paths counts once), in registration order
     * (stop in reverse order); any may be NULL. */
    /* After the worker's event base exists, before it accepts. 0, or -1
     * when the module cannot work with this configuration (a URL it
     * cannot use, a secret it cannot read): the modules started before
     * it are stopped and the worker exits PL_WORKER_EXIT_CONFIG, which
     * stops the whole gateway with status 2 instead of respawning
     * workers that would fail the same way (worker.h). */
    int (*worker_start)(pl_worker_t *w);
    /* SIGTERM: the worker stops accepting; called before its WebSockets
     * get 1001 (each still gets closed afterwards). */
    void (*worker_drain)(pl_worker_t *w);
    /* Every connection is CLOSED (closed ran for each); the event base
     * still exists and is freed right after. */
    void (*worker_stop)(pl_worker_t *w);

    /* Per connection on this path. */
    /* The upgrade is done (101 queued). May be NULL. Not called for an
     * upgrade that completes while the worker drains (closed at once with
     * 1001). */
    void (*open)(pl_conn_t *c);
    /* One complete, UTF-8-validated text message; text is valid only
     * during the call. Required. */
    void (*message)(pl_conn_t *c, const uint8_t *text, size_t len);
    /* One complete binary message, valid only during the call. NULL: the
     * path takes text only and a binary message (its first fragment)
     * closes the connection with 1003. */
    void (*binary)(pl_conn_t *c, const uint8_t *data, size_t len);
    /* The socket is closed (any reason); release c->session. Called exactly
     * once for every connection that went through open (or would have, if
     * open is NULL), never from inside pl_conn_close. May be NULL. */
    void (*closed)(pl_conn_t *c);
} pl_ws_ops_t;

#define PL_OPS_MAX 7 /* registered paths per process */

/* Registers ops for requests whose path (query ignored) equals path.
 * path is copied; ops is kept and must outlive the registration (a static
 * const table). The first registration of a path wins. /healthz and
 * /metrics are answered before the table is consulted. Returns 0, or -1
 * (logged) when the table is full. */
int pl_ops_register(const char *path, const pl_ws_ops_t *ops);
/* Empties the table (the master, before registering for a new config;
 * workers already running keep their copy). */
void pl_ops_clear(void);

#endif
