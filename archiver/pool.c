/*
 * The writer threads and their one-slot hand-over (see pool.h).
 *
 * Exactly-once: a batch is acknowledged only after its COMMIT, so a crash
 * anywhere leaves its entries pending; re-delivery is idempotent (the
 * writer tells duplicates from conflicts), so nothing is lost or stored
 * twice.
 */
#include "pool.h"
#include "log.h"
#include "marks.h"
#include "metrics.h"
#include "retry.h"
#include "util.h"
#include "writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* How one batch ended. */
enum batch_rc {
    BATCH_OK,      /* committed and acknowledged */
    BATCH_STOPPED, /* a stop arrived while retrying; the batch stays pending */
    BATCH_FATAL,   /* cannot go on (schema or permissions) */
};

typedef struct worker {
    pl_pool_t *pool;
    int id;
    pthread_t thread;
    pl_writer_t *writer;
    pl_reader_t *acker; /* only its control connection is used: XACK, dead letters */
    pl_arch_batch_t batch;
} worker_t;

struct pl_pool {
    worker_t *workers;
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* a batch is in the slot, or quit */
    pthread_cond_t cv_free; /* the slot was emptied, or a worker failed */
    pl_arch_batch_t slot;   /* guarded by mu */
    int slot_full, quit;    /* guarded by mu */
    atomic_int fatal;       /* a worker met an error retrying cannot fix */
};

/* Writes the batch to MySQL until it commits, then acks it in Redis until
 * that succeeds. */
static enum batch_rc process(worker_t *wk, pl_arch_batch_t *b)
{
    size_t n = b->n;
    pl_arch_row_t *rows = pl_xmalloc((n ? n : 1) * sizeof(*rows));
    size_t *row_entry = pl_xmalloc((n ? n : 1) * sizeof(*row_entry));
    uint8_t *status = pl_xmalloc(n ? n : 1);
    pl_arch_dead_t *dead = pl_xmalloc((n ? n : 1) * sizeof(*dead));
    pl_arch_bytes_t *ids = pl_xmalloc((n ? n : 1) * sizeof(*ids));
    pl_arch_mark_t *marks = pl_xmalloc((n ? n : 1) * sizeof(*marks));
    size_t nrows = 0, ndead = 0;
    enum batch_rc rc = BATCH_OK;

    for (size_t i = 0; i < n; i++) {
        pl_arch_entry_t *e = &b->entries[i];
        ids[i] = e->id;
        if (e->fields == NULL)
            continue; /* deleted from the stream while pending: just ack */
        const char *why;
        if (pl_arch_row_parse(&rows[nrows], e->fields, e->nfields, &why) < 0) {
            pl_arch_metrics_error(ERRK_MALFORMED);
            pl_log_warn("malformed stream entry, dead-lettered\tid=%.*s reason=\"%s\"",
                        (int)e->id.n, e->id.p, why);
            dead[ndead++] = (pl_arch_dead_t){e, why};
            continue;
        }
        row_entry[nrows++] = i;
    }

    if (nrows > 0) {
        uint64_t delay = PL_RETRY_MIN_MS;
        int failures = 0;
        pl_write_result_t res;
        for (;;) {
            struct timespec s0, s1;
            clock_gettime(CLOCK_MONOTONIC, &s0);
            int w = pl_writer_write(wk->writer, rows, nrows, status, &res);
            if (w == WRITE_OK) {
                clock_gettime(CLOCK_MONOTONIC, &s1);
                uint64_t us = (uint64_t)(s1.tv_sec - s0.tv_sec) * 1000000 +
                              (uint64_t)((s1.tv_nsec - s0.tv_nsec) / 1000);
                pl_arch_metrics_batch(us);
                if (failures)
                    pl_log_info("mysql write succeeded after retries\tattempts=%d", failures + 1);
                break;
            }
            pl_arch_metrics_error(ERRK_MYSQL);
            if (w == WRITE_FATAL) {
                pl_log_error("mysql write failed, giving up\terror=\"%s\"",
                             pl_writer_error(wk->writer));
                rc = BATCH_FATAL;
                goto out;
            }
            failures++;
            if (failures == 1 || pl_log_level >= PL_LOG_DEBUG || failures % 20 == 0)
                pl_log_warn("mysql write failed, retrying\terror=\"%s\" attempt=%d retry_ms=%llu "
                            "rows=%zu",
                            pl_writer_error(wk->writer), failures, (unsigned long long)delay,
                            nrows);
            if (pl_retry_nap(delay) < 0) {
                pl_log_warn("stopping with an uncommitted batch; it stays pending\trows=%zu",
                            nrows);
                rc = BATCH_STOPPED;
                goto out;
            }
            delay = pl_retry_next(delay);
        }
        atomic_fetch_add(&pl_arch_metrics.rows_written, res.inserted);
        atomic_fetch_add(&pl_arch_metrics.duplicates, res.duplicates);
        atomic_fetch_add(&pl_arch_metrics.conflicts, res.conflicts);
        if (res.duplicates)
            pl_log_info("re-delivered entries were already stored\tduplicates=%llu",
                        (unsigned long long)res.duplicates);
        if (res.conflicts || res.missing) {
            for (size_t r = 0; r < nrows; r++) {
                if (status[r] == ROW_STORED)
                    continue;
                pl_arch_entry_t *e = &b->entries[row_entry[r]];
                const char *why = status[r] == ROW_CONFLICT
                                      ? "conflict: (room, seq) stored with a different msg_id"
                                      : "row not stored by INSERT IGNORE";
                pl_arch_metrics_error(status[r] == ROW_CONFLICT ? ERRK_CONFLICT : ERRK_MISSING);
                pl_log_error("message not archived, dead-lettered\tid=%.*s seq=%llu "
                             "msg_id=\"%.*s\" reason=\"%s\"",
                             (int)e->id.n, e->id.p, (unsigned long long)rows[r].seq,
                             (int)(rows[r].msg_id.n > 64 ? 64 : rows[r].msg_id.n), rows[r].msg_id.p,
                             why);
                dead[ndead++] = (pl_arch_dead_t){e, why};
            }
        }
        pl_log_debug("batch committed\trows=%zu inserted=%llu duplicates=%llu conflicts=%llu",
                     nrows, (unsigned long long)res.inserted, (unsigned long long)res.duplicates,
                     (unsigned long long)res.conflicts);
    }

    /* Committed: now, and only now, raise the rooms' archived markers (so
     * gateways may trim these from Redis), then acknowledge. A failure
     * redoes both; raising a marker twice is harmless. */
    size_t nmarks = pl_arch_marks(rows, status, nrows, marks);
    uint64_t delay = PL_RETRY_MIN_MS;
    for (;;) {
        if (!pl_reader_connected(wk->acker) && pl_retry_connect(wk->acker) < 0)
            goto unacked;
        if (pl_reader_mark_archived(wk->acker, marks, nmarks) == 0 &&
            pl_reader_ack(wk->acker, ids, n, dead, ndead) == 0)
            break;
        pl_retry_failed(wk->acker, "ack");
        if (pl_retry_nap(delay) < 0)
            goto unacked;
        delay = pl_retry_next(delay);
    }
    atomic_fetch_add(&pl_arch_metrics.dead_letters, ndead);
    goto out;
unacked:
    pl_log_warn("stopping before the ack of a committed batch; it will be re-delivered and "
                "recognised as duplicates\tentries=%zu",
                n);
    rc = BATCH_STOPPED;
out:
    free(rows);
    free(row_entry);
    free(status);
    free(dead);
    free(ids);
    free(marks);
    return rc;
}

static void *worker_main(void *arg)
{
    worker_t *wk = arg;
    pl_pool_t *a = wk->pool;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->slot_full && !a->quit)
            pthread_cond_wait(&a->cv_work, &a->mu);
        if (!a->slot_full) { /* quit and nothing left */
            pthread_mutex_unlock(&a->mu);
            break;
        }
        pl_arch_batch_t tmp = wk->batch;
        wk->batch = a->slot;
        a->slot = tmp;
        a->slot_full = 0;
        pthread_cond_signal(&a->cv_free);
        pthread_mutex_unlock(&a->mu);

        enum batch_rc rc = process(wk, &wk->batch);
        pl_arch_batch_clear(&wk->batch);
        if (rc == BATCH_FATAL) {
            atomic_store(&a->fatal, 1);
            pthread_mutex_lock(&a->mu);
            pthread_cond_broadcast(&a->cv_free);
            pthread_mutex_unlock(&a->mu);
        }
    }
    return NULL;
}

int pl_pool_dispatch(pl_pool_t *a, pl_arch_batch_t *b)
{
    pthread_mutex_lock(&a->mu);
    while (a->slot_full && !atomic_load(&a->fatal))
        pthread_cond_wait(&a->cv_free, &a->mu);
    if (atomic_load(&a->fatal)) {
        pthread_mutex_unlock(&a->mu);
        pl_arch_batch_clear(b);
        return -1;
    }
    pl_arch_batch_t tmp = a->slot;
    a->slot = *b;
    *b = tmp;
    a->slot_full = 1;
    pthread_cond_signal(&a->cv_work);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

int pl_pool_failed(const pl_pool_t *p)
{
    return atomic_load(&p->fatal);
}

pl_pool_t *pl_pool_start(const pl_arch_config_t *cfg, const pl_redis_url_t *rurl,
                         const pl_mysql_url_t *murl, const char *consumer)
{
    pl_pool_t *a = pl_xcalloc(1, sizeof(*a));
    a->nworkers = (int)cfg->writers;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv_work, NULL);
    pthread_cond_init(&a->cv_free, NULL);
    a->workers = pl_xcalloc((size_t)a->nworkers, sizeof(*a->workers));
    /* Signals go to the main thread only. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < a->nworkers; i++) {
        worker_t *w = &a->workers[i];
        w->pool = a;
        w->id = i;
        w->writer = pl_writer_new(murl);
        w->acker = pl_reader_new(rurl, cfg->stream, cfg->group, consumer, cfg->block_ms);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pl_log_error("pthread_create() failed for a writer");
            abort();
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return a;
}

int pl_pool_stop(pl_pool_t *a)
{
    pthread_mutex_lock(&a->mu);
    a->quit = 1;
    pthread_cond_broadcast(&a->cv_work);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->nworkers; i++) {
        worker_t *w = &a->workers[i];
        pthread_join(w->thread, NULL);
        pl_writer_free(w->writer);
        pl_reader_free(w->acker);
        pl_arch_batch_clear(&w->batch);
        free(w->batch.entries);
        free(w->batch.fieldbuf);
    }
    pl_arch_batch_clear(&a->slot);
    free(a->slot.entries);
    free(a->slot.fieldbuf);
    free(a->workers);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv_work);
    pthread_cond_destroy(&a->cv_free);
    int fatal = atomic_load(&a->fatal);
    free(a);
    return fatal;
}
