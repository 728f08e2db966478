/*
 * The archiver's counters and the HTTP endpoint that serves them:
 * GET /metrics (Prometheus text format) and GET /healthz (200 "ok").
 *
 * The archive loop is blocking, so the HTTP server runs in its own thread
 * with its own libevent base; the loop updates the counters with relaxed
 * atomics and the server only reads them.
 */
#ifndef PL_ARCH_METRICS_H
#define PL_ARCH_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Kinds for parley_archiver_errors_total{kind=...}. */
enum pl_err_kind {
    ERRK_REDIS,     /* Redis command or connection failed */
    ERRK_MYSQL,     /* MySQL statement or connection failed */
    ERRK_MALFORMED, /* stream entry missing fields or with bad values (dead-lettered) */
    ERRK_CONFLICT,  /* same (room, seq) stored with a different msg_id (dead-lettered) */
    ERRK_MISSING,   /* row neither inserted nor found after INSERT IGNORE (dead-lettered) */
    ERRK_COUNT
};

#define PL_BATCH_BUCKETS 11

typedef struct pl_arch_metrics {
    _Atomic uint64_t rows_written; /* rows newly inserted */
    _Atomic uint64_t duplicates;   /* re-delivered rows already stored with the same msg_id */
    _Atomic uint64_t conflicts;    /* same key, different msg_id */
    _Atomic uint64_t batches;      /* committed batches */
    _Atomic uint64_t dead_letters; /* entries copied to the dead-letter stream */
    _Atomic uint64_t trimmed;      /* entries removed from the stream by XTRIM */
    _Atomic uint64_t errors[ERRK_COUNT];
    _Atomic uint64_t batch_us_sum;                    /* total batch write time, microseconds */
    _Atomic uint64_t batch_buckets[PL_BATCH_BUCKETS]; /* non-cumulative histogram counts */
    _Atomic int64_t stream_pending; /* delivered to the group, not acked (last sample) */
    _Atomic int64_t stream_lag;     /* not yet delivered to the group; -1 = unknown */
    _Atomic int64_t stream_length;  /* XLEN (last sample) */
} pl_arch_metrics_t;

extern pl_arch_metrics_t pl_arch_metrics;

/* Upper bounds (seconds) of the batch_seconds histogram buckets. */
extern const double pl_arch_batch_bucket_le[PL_BATCH_BUCKETS];

void pl_arch_metrics_error(enum pl_err_kind kind);
/* Records one committed batch that took us microseconds. */
void pl_arch_metrics_batch(uint64_t us);

/* Renders m as Prometheus text; the caller frees the string. */
char *pl_arch_metrics_render(pl_arch_metrics_t *m);

/* Binds listen ("host:port") and serves in a background thread. Returns
 * 0, or -1 with the reason in err (bad address, port in use). */
int pl_arch_metrics_start(const char *listen, char *err, size_t errlen);

#endif
