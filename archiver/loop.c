/*
 * The batch loop of `run` and `drain` (see loop.h). The main thread reads:
 * it takes a batch from the consumer group (first this consumer's own
 * pending entries, then entries idle too long in other consumers, then new
 * ones), asks Redis for the next batch, and hands this one to a writer
 * thread (pool.c), which writes it in one transaction and only after
 * COMMIT acknowledges it. A crash anywhere leaves the entries pending, and
 * re-delivery is idempotent (see writer.c), so nothing is lost or stored
 * twice. The loop also trims the stream and samples the group for the
 * metrics, and decides when a drain is done.
 */
#include "loop.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "reader.h"
#include "retry.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_EVERY_MS 10000

/* Where a batch came from. */
enum source {
    SRC_PENDING, /* our own pending entries, re-read from an ID */
    SRC_CLAIM,   /* XAUTOCLAIMed from another consumer */
    SRC_NEW,     /* never delivered before (">") */
};

typedef struct arch {
    const pl_arch_config_t *cfg;
    int drain;
    pl_reader_t *reader;
    pl_pool_t *pool;     /* the writer threads the batches go to */
    enum source phase;   /* SRC_PENDING until our own pending list is read, then SRC_NEW */
    char pend_from[48];  /* next ID to re-read our pending entries after */
    int outstanding_src; /* source of the read sent ahead (prefetch) */
    char claim_cursor[48];
    uint64_t next_claim_at, claim_every;
    uint64_t next_trim_at, next_progress_at;
    pl_arch_batch_t batch; /* the batch read last; dispatch swaps in an empty one */
    uint64_t last_rows;
    int64_t block_ms; /* BLOCK for new entries (shorter for drain) */
} arch_t;

static void update_gauges(const pl_arch_group_stats_t *st)
{
    atomic_store(&pl_arch_metrics.stream_pending, st->pending);
    atomic_store(&pl_arch_metrics.stream_lag, st->lag);
    atomic_store(&pl_arch_metrics.stream_length, st->length);
}

/* Connects the main reader; returns 0, or -1 if stopped. */
static int redis_connect(arch_t *a)
{
    if (pl_retry_connect(a->reader) < 0)
        return -1;
    /* Whatever was delivered to us and not acked is pending again under our
     * name: re-read it before anything new. (Batches still in a writer get
     * written twice; the second time they count as duplicates.) */
    a->phase = SRC_PENDING;
    strcpy(a->pend_from, "0");
    return 0;
}

static void redis_failed(arch_t *a, const char *when)
{
    pl_retry_failed(a->reader, when);
}

static void maybe_trim(arch_t *a, int force)
{
    uint64_t now = pl_mono_ms();
    if (!force && now < a->next_trim_at)
        return;
    a->next_trim_at = now + (uint64_t)a->cfg->trim_interval;
    if (!pl_reader_connected(a->reader))
        return;
    pl_arch_group_stats_t st;
    long long t = pl_reader_trim(a->reader, &st);
    if (t < 0) {
        redis_failed(a, "trim");
        return;
    }
    atomic_fetch_add(&pl_arch_metrics.trimmed, (uint64_t)t);
    update_gauges(&st);
    if (now >= a->next_progress_at) {
        a->next_progress_at = now + PROGRESS_EVERY_MS;
        uint64_t rows = atomic_load(&pl_arch_metrics.rows_written);
        if (rows != a->last_rows)
            pl_log_info("progress\trows_written=%llu pending=%lld lag=%lld stream_length=%lld",
                        (unsigned long long)rows, (long long)st.pending, (long long)st.lag,
                        (long long)st.length);
        a->last_rows = rows;
    }
}

/* Gets the next batch into a->batch; *src says where from. Returns 0 or -1
 * on a Redis error. */
static int next_batch(arch_t *a, enum source *src)
{
    pl_reader_t *r = a->reader;
    if (pl_reader_outstanding(r)) {
        *src = (enum source)a->outstanding_src;
        return pl_reader_recv(r, &a->batch);
    }
    uint64_t now = pl_mono_ms();
    if (a->phase == SRC_NEW && now >= a->next_claim_at) {
        *src = SRC_CLAIM;
        int rc = pl_reader_autoclaim(r, a->cfg->claim_idle, a->claim_cursor,
                                     sizeof(a->claim_cursor), a->cfg->batch_size, &a->batch);
        if (rc == 0 && strcmp(a->claim_cursor, "0-0") == 0)
            a->next_claim_at = now + a->claim_every;
        if (rc == 0 && a->batch.n > 0)
            pl_log_info("claimed entries idle in other consumers\tentries=%zu", a->batch.n);
        return rc;
    }
    *src = a->phase;
    const char *from = a->phase == SRC_PENDING ? a->pend_from : ">";
    if (pl_reader_send_read(r, from, a->cfg->batch_size, a->block_ms) < 0)
        return -1;
    return pl_reader_recv(r, &a->batch);
}

/* The run/drain loop. Returns the exit code. */
static int archive(arch_t *a)
{
    pl_arch_group_stats_t st;
    a->phase = SRC_PENDING;
    strcpy(a->pend_from, "0");
    strcpy(a->claim_cursor, "0-0");
    a->claim_every = (uint64_t)a->cfg->claim_idle / 2;
    if (a->claim_every < 100)
        a->claim_every = 100;
    if (a->claim_every > 10000)
        a->claim_every = 10000;
    /* drain only needs to see that nothing new arrives for a moment. */
    a->block_ms = a->drain && a->cfg->block_ms > 100 ? 100 : a->cfg->block_ms;
    a->next_claim_at = 0; /* claim once right after our own pending entries */
    int done = 0, waiting_logged = 0;

    while (!pl_arch_stopping && !pl_pool_failed(a->pool)) {
        if (!pl_reader_connected(a->reader) && redis_connect(a) < 0)
            break;
        enum source src;
        if (next_batch(a, &src) < 0) {
            redis_failed(a, "read");
            continue;
        }
        pl_arch_batch_t *b = &a->batch;
        if (b->n == 0) {
            if (src == SRC_PENDING) {
                a->phase = SRC_NEW;
                continue;
            }
            if (src == SRC_CLAIM)
                continue;
            if (pl_pool_failed(a->pool))
                break;
            /* Nothing new: a good moment to trim and to check for the end. */
            maybe_trim(a, 0);
            if (a->drain && pl_reader_connected(a->reader)) {
                if (pl_reader_stats(a->reader, &st) < 0) {
                    redis_failed(a, "stats");
                    continue;
                }
                update_gauges(&st);
                if (st.pending == 0) {
                    maybe_trim(a, 1);
                    pl_log_info("caught up, drain done\trows_written=%llu duplicates=%llu "
                                "conflicts=%llu stream_length=%lld",
                                (unsigned long long)atomic_load(&pl_arch_metrics.rows_written),
                                (unsigned long long)atomic_load(&pl_arch_metrics.duplicates),
                                (unsigned long long)atomic_load(&pl_arch_metrics.conflicts),
                                (long long)atomic_load(&pl_arch_metrics.stream_length));
                    done = 1;
                    break;
                }
                if (!waiting_logged)
                    pl_log_info("waiting for entries pending in other consumers (claimed once "
                                "idle for claim_idle)\tpending=%lld claim_idle_ms=%lld",
                                (long long)st.pending, (long long)a->cfg->claim_idle);
                waiting_logged = 1;
            }
            continue;
        }
        if (src == SRC_PENDING) {
            const pl_arch_bytes_t *last = &b->entries[b->n - 1].id;
            size_t len = last->n < sizeof(a->pend_from) - 1 ? last->n : sizeof(a->pend_from) - 1;
            memcpy(a->pend_from, last->p, len);
            a->pend_from[len] = '\0';
        }
        /* Ask for the next batch now so Redis prepares it while MySQL
         * writes this one. Not when stopping (it would only sit pending)
         * nor when a claim is due (that runs on the same connection). */
        if (!pl_arch_stopping && !(a->phase == SRC_NEW && pl_mono_ms() >= a->next_claim_at)) {
            const char *from = a->phase == SRC_PENDING ? a->pend_from : ">";
            if (pl_reader_send_read(a->reader, from, a->cfg->batch_size, a->block_ms) == 0)
                a->outstanding_src = a->phase;
            else
                redis_failed(a, "prefetch");
        }
        if (pl_pool_dispatch(a->pool, &a->batch) < 0)
            break;
        maybe_trim(a, 0);
    }
    /* A read sent ahead may have delivered entries we did not process:
     * write them too rather than leave them pending under a consumer name
     * that may never come back. */
    if (pl_reader_outstanding(a->reader) && !pl_pool_failed(a->pool)) {
        enum source src;
        if (next_batch(a, &src) == 0 && a->batch.n > 0)
            pl_pool_dispatch(a->pool, &a->batch);
    }
    /* The writers finish (commit and ack) the batches they hold. */
    int fatal = pl_pool_stop(a->pool);
    a->pool = NULL;
    if (fatal)
        return 1;
    maybe_trim(a, 1);
    if (pl_reader_connected(a->reader) && pl_reader_forget_consumer(a->reader) == 1)
        pl_log_debug("left the consumer group (nothing pending under our name)");
    if (done)
        return 0;
    pl_log_info("stopped\tsignal=%d rows_written=%llu", (int)pl_arch_stopping,
                (unsigned long long)atomic_load(&pl_arch_metrics.rows_written));
    return a->drain ? 1 : 0;
}

int pl_loop_run(const pl_arch_config_t *cfg, const pl_redis_url_t *rurl, const pl_mysql_url_t *murl,
                const char *consumer, int drain)
{
    arch_t a = {0};
    a.cfg = cfg;
    a.drain = drain;
    a.reader = pl_reader_new(rurl, cfg->stream, cfg->group, consumer, cfg->block_ms);
    a.pool = pl_pool_start(cfg, rurl, murl, consumer);
    int code = archive(&a);
    pl_arch_batch_clear(&a.batch);
    free(a.batch.entries);
    free(a.batch.fieldbuf);
    pl_reader_free(a.reader);
    return code;
}
