/*
 * The transport's private API: what conn.c, worker.c, ops.c and master.c
 * call in each other. Upper layers (chat, store) never include it; they
 * see conn.h, worker.h and ops.h. The unit test of the transport
 * (tests/unit/test_conn.c) does, to drive a worker over a socketpair.
 *
 * Enforced by the build: the net library is compiled with PL_IN_NET (see
 * Makefile.am), the other layers are not; the unit test defines it itself.
 */
#ifndef PL_NET_PRIVATE_H
#define PL_NET_PRIVATE_H

#ifndef PL_IN_NET
// cppcheck-suppress preprocessorErrorDirective ; cppcheck tries every configuration
#error "net_private.h is the transport's own header: use conn.h, worker.h, ops.h"
#endif

#include <stddef.h>
#include <sys/queue.h>
#include <stdint.h>

#include "addr.h"
#include "conn.h"
#include "http.h"
#include "ops.h"
#include "options.h"
#include "worker.h"

struct pl_metrics;
struct sockaddr;

/* ---- conn.c (for worker.c) ---- */

/* pl_conn_new flags (how the client address is known, see worker.c) */
#define PL_CONN_PROXIED                                                                            \
    1u /* the peer is in trusted_proxies: the client address comes from                            \
          its request's X-Forwarded-For / X-Real-IP */
#define PL_CONN_IP_HELD                                                                            \
    2u /* worker.c counted the peer's address (pl_iplimit_acquire):                                \
          released when the connection closes */

/* Takes over an accepted non-blocking socket: state HTTP, handshake timer
 * armed, linked on the worker's open list. */
pl_conn_t *pl_conn_new(pl_worker_t *w, int fd, const struct sockaddr *sa, unsigned flags);
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
/* The worker's lists (open, closed): <sys/queue.h> LISTs, like the MySQL
 * pool's TAILQs, with the link in the connection's private part. Push c on
 * head, take c off the list it is on, and the connection after c (NULL at
 * the end). */
LIST_HEAD(pl_conn_list, pl_conn);
void pl_conn_list_add(struct pl_conn_list *head, pl_conn_t *c);
void pl_conn_list_del(pl_conn_t *c);
pl_conn_t *pl_conn_list_next(const pl_conn_t *c);

/* ---- worker.c (for conn.c, master.c and the unit test) ---- */

/* Runs a worker on an already bound, listening fd until it has drained.
 * Returns the process exit status. */
int pl_worker_run(const pl_gw_config_t *cfg, int index, int listen_fd, struct pl_metrics *metrics);
/* What pl_worker_run does around its loop, for a harness that drives the
 * base itself. init: creates the event base and the worker's own events
 * (accept only if listen_fd >= 0, which w then owns); no module hooks run
 * (pl_ops_worker_start does that). Returns 0, or -1 if libevent failed.
 * fini: drops every connection still open, frees the closed ones, frees
 * the base and what init allocated; call pl_ops_worker_stop before it if
 * the modules were started. */
int pl_worker_init(pl_worker_t *w, const pl_gw_config_t *cfg, int index, int listen_fd,
                   struct pl_metrics *metrics);
void pl_worker_fini(pl_worker_t *w);
/* Starts the drain (what SIGTERM does): stop accepting, modules' drain,
 * 1001 to every WebSocket, exit the loop when none is left or at
 * drain_timeout. Later calls are ignored. */
void pl_worker_drain(pl_worker_t *w);
/* Connections currently not CLOSED. */
size_t pl_worker_nopen(const pl_worker_t *w);
/* Links a new connection on the open list and counts it. */
void pl_worker_conn_add(pl_worker_t *w, pl_conn_t *c);
/* Moves a connection that just became CLOSED to the list freed at the
 * end of the loop pass. */
void pl_worker_conn_closed(pl_worker_t *w, pl_conn_t *c);
/* A per-worker read buffer for connections with no pending input; its
 * contents are only valid during one read callback. */
uint8_t *pl_worker_scratch(pl_worker_t *w, size_t *cap);
/* Next connection id. */
uint64_t pl_worker_next_id(pl_worker_t *w);
/* max_connections in effect for cfg in this process: the configured value
 * (0 = no cap of its own) but never more than RLIMIT_NOFILE less the
 * reserve the worker keeps for itself (*reserve, may be NULL). */
size_t pl_worker_max_conns(const pl_gw_config_t *cfg, size_t *reserve);
/* trusted_proxies, parsed once per worker. */
const pl_cidr_list_t *pl_worker_trusted(const pl_worker_t *w);
/* A limit refusal is about to be logged: 1 if it may (then *suppressed is
 * how many were not since the last line), 0 past REFUSAL_LOGS_PER_SEC. */
int pl_worker_refusal_log(pl_worker_t *w, unsigned *suppressed);

/* ---- ops.c (the path -> module table, for conn.c and worker.c) ---- */

/* By id, 1..PL_OPS_MAX; [0] and unused slots are NULL. Read-only while a
 * worker runs. conn.c keeps the id (3 bits) rather than a pointer. */
extern const pl_ws_ops_t *pl_ops_by_id[PL_OPS_MAX + 1];

/* The id of the module registered for the request's path, 0 if none. */
unsigned pl_ops_find(const pl_http_req_t *req);
/* Every module's worker hooks (see ops.h). start returns 0, or -1 after
 * stopping the modules it had started (logged, naming the module). */
int pl_ops_worker_start(pl_worker_t *w);
void pl_ops_worker_drain(pl_worker_t *w);
void pl_ops_worker_stop(pl_worker_t *w);

#endif
