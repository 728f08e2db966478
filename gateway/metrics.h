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
 * ADDING A COUNTER (chat protocol etc.): add a uint64_t field to struct
 * pl_metrics in the marked spot below, and one line to the table in
 * metrics.c (name, help, type, offsetof). Bump it from the worker with
 * w->metrics->your_field++ (or += n). Nothing else is needed; it is
 * summed and rendered with a per-worker series automatically.
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

/* Close codes 1000..1015 are counted individually; anything else as "other". */
#define PL_METRICS_CLOSE_MIN 1000
#define PL_METRICS_CLOSE_N 17 /* 1000..1015 + other */

typedef struct pl_metrics {
    int64_t connections_open;      /* gauge: sockets accepted and not yet closed */
    uint64_t connections_total;    /* accepted sockets */
    uint64_t frames_in_total;      /* WebSocket frames parsed from clients */
    uint64_t frames_out_total;     /* WebSocket frames queued to clients */
    uint64_t bytes_in_total;       /* bytes read from client sockets */
    uint64_t bytes_out_total;      /* bytes written to client sockets */
    uint64_t handshake_failures[PL_HS_NREASONS];
    uint64_t close_codes_sent[PL_METRICS_CLOSE_N];
    /* ---- chat protocol counters: add uint64_t fields here and a line
     * to the table in metrics.c ---- */
    uint64_t reserved[16];         /* spare, keeps the block size stable */
    char pad[64];                  /* keeps neighbouring blocks off one cache line */
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
/* Appends the Prometheus text exposition of all blocks to out. */
void pl_metrics_render(struct evbuffer *out);
/* The label value of a handshake failure reason ("timeout", ...). */
const char *pl_metrics_hs_reason_name(enum pl_hs_reason r);

#endif
