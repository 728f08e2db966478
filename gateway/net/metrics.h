/*
 * Gateway metrics: one counter block per worker process in a MAP_SHARED
 * anonymous mapping the master creates before forking. A worker writes
 * only its own block (plain, non-atomic increments: single writer); any
 * worker renders the sum of all blocks plus per-worker series for
 * GET /metrics in the Prometheus text format.
 *
 * Blocks: PL_METRICS_BLOCKS_PER_SLOT per worker slot. During a SIGHUP
 * rolling restart the old and the new process of a slot run side by side,
 * so the master hands the new one a block of the slot that no live process
 * uses (pl_metrics_block). Counters are never reset,
 * so totals stay monotonic across restarts; only the gauge of a dead
 * process's block is zeroed by the master (pl_metrics_reset_gauges).
 *
 * ADDING A COUNTER (chat protocol etc.), either way:
 *  - at run time, without touching this file: in every worker, at start
 *    (the module's worker_start, ops.h), id = pl_metrics_register("parley_x_total",
 *    "counter", "help"); then pl_metrics_add(w->metrics, id, n). Gauges
 *    ("gauge") are zeroed when the worker dies, like connections_open.
 *  - or statically: a uint64_t field in struct pl_metrics in the marked
 *    spot below and one line in the table in metrics.c; bump it with
 *    w->metrics->field++.
 * Either way it is summed over workers and rendered with per-worker series.
 * A registered name may carry labels, `parley_x_total{source="redis"}`:
 * each label set is registered as its own series and rendered as one
 * family (HELP/TYPE once, from the first one registered). Families must
 * be registered next to each other.
 */
#ifndef PL_METRICS_H
#define PL_METRICS_H

#include <stdint.h>

struct evbuffer;

/* Why an HTTP request on the gateway port did not become a WebSocket. */
enum pl_hs_reason {
    PL_HS_MALFORMED,   /* 400: request head does not parse */
    PL_HS_TOO_LARGE,   /* 431: head over 8 KiB */
    PL_HS_NOT_FOUND,   /* 404: unknown path */
    PL_HS_METHOD,      /* 405: not GET */
    PL_HS_NOT_UPGRADE, /* 400: missing Upgrade: websocket / Connection: upgrade */
    PL_HS_BAD_KEY,     /* 400: missing or malformed Sec-WebSocket-Key */
    PL_HS_BAD_VERSION, /* 426: Sec-WebSocket-Version is not 13 */
    PL_HS_ORIGIN,      /* 403: Origin not in the allow-list */
    PL_HS_TIMEOUT,     /* handshake_timeout passed without a complete head */
    PL_HS_NREASONS
};

/* Why a connection (or, for upper layers, a request) was refused by a
 * limit: parley_limit_rejections_total{limit="..."}. The transport's own
 * are fixed here; an upper layer adds its names at worker start with
 * pl_metrics_limit_register (same name, same id; the same calls in the
 * same order in every worker, like pl_metrics_register) and counts with
 * pl_metrics_limit(w->metrics, id). */
enum pl_limit {
    PL_LIMIT_MAX_CONNECTIONS,        /* "max_connections": the worker holds its maximum */
    PL_LIMIT_MAX_CONNECTIONS_PER_IP, /* "max_connections_per_ip": the address holds its maximum */
    PL_LIMIT_OPEN_FILES,             /* "open_files": accept() hit EMFILE/ENFILE anyway */
    PL_LIMIT_NFIXED
};
#define PL_LIMITS_MAX 16 /* fixed and registered limit names */

/* Close codes 1000..1015 are counted individually; anything else as "other". */
#define PL_METRICS_CLOSE_MIN 1000
#define PL_METRICS_CLOSE_N 17 /* 1000..1015 + other */
#define PL_METRICS_EXTRA 32   /* run-time registered series per block */

typedef struct pl_metrics {
    int64_t connections_open;   /* gauge: sockets accepted and not yet closed */
    uint64_t connections_total; /* accepted sockets */
    uint64_t frames_in_total;   /* WebSocket frames parsed from clients */
    uint64_t frames_out_total;  /* WebSocket frames queued to clients */
    uint64_t bytes_in_total;    /* bytes read from client sockets */
    uint64_t bytes_out_total;   /* bytes written to client sockets */
    uint64_t handshake_failures[PL_HS_NREASONS];
    uint64_t close_codes_sent[PL_METRICS_CLOSE_N];
    uint64_t limit_rejections[PL_LIMITS_MAX]; /* by enum pl_limit or registered id */
    /* ---- chat protocol counters: add uint64_t fields here and a line
     * to the table in metrics.c ---- */
    int64_t extra[PL_METRICS_EXTRA]; /* pl_metrics_register()ed series, by id */
    uint32_t extra_gauges;           /* bit id set: extra[id] is a gauge (reset on death) */
    char pad[64];                    /* keeps neighbouring blocks off one cache line */
} pl_metrics_t;

#define PL_METRICS_BLOCKS_PER_SLOT 4

/* Master, before forking: maps PL_METRICS_BLOCKS_PER_SLOT * nslots zeroed
 * blocks. Returns 0/-1. */
int pl_metrics_create(int nslots);
/* Block b (0 .. PL_METRICS_BLOCKS_PER_SLOT*nslots-1) belongs to slot
 * b % nslots. */
pl_metrics_t *pl_metrics_block(int b);
/* Master, after the process using block b died: zero its gauges. */
void pl_metrics_reset_gauges(int b);
/* Counts one close code sent. */
void pl_metrics_close_code(pl_metrics_t *m, unsigned code);
/* Worker side, at start, the same calls in the same order in every
 * worker: registers a series (type "counter" or "gauge"; name and help are
 * copied) and returns its id, or -1 if all PL_METRICS_EXTRA are taken.
 * The same name again returns the same id. m is the worker's block. */
int pl_metrics_register(pl_metrics_t *m, const char *name, const char *type, const char *help);
/* Adds n (may be negative for gauges) to a registered series; id -1 is a no-op. */
static inline void pl_metrics_add(pl_metrics_t *m, int id, int64_t n)
{
    if (id >= 0 && id < PL_METRICS_EXTRA)
        m->extra[id] += n;
}
/* Worker side, at start: the id of limit name (e.g. "max_user_connections")
 * for pl_metrics_limit; the same name again returns the same id, a fixed
 * name its enum pl_limit value. -1 (logged) if PL_LIMITS_MAX are taken. */
int pl_metrics_limit_register(const char *name);
/* Counts one rejection by limit id; -1 is a no-op. */
static inline void pl_metrics_limit(pl_metrics_t *m, int id)
{
    if (id >= 0 && id < PL_LIMITS_MAX)
        m->limit_rejections[id]++;
}
/* The label value of a limit id ("max_connections"), "unknown" if none. */
const char *pl_metrics_limit_name(int id);
/* Appends the Prometheus text exposition of all blocks to out. */
void pl_metrics_render(struct evbuffer *out);
/* The label value of a handshake failure reason ("timeout", ...). */
const char *pl_metrics_hs_reason_name(enum pl_hs_reason r);

#endif
