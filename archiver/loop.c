/*
 * parley-archiver: moves acknowledged chat messages from the Redis stream
 * parley:archive into MySQL/MariaDB.
 *
 *   parley-archiver [-c FILE] run      until SIGTERM/SIGINT
 *   parley-archiver [-c FILE] drain    until the stream is caught up
 *   parley-archiver [-c FILE] migrate  apply missing deploy/sql migrations
 *
 * The main thread reads: it takes a batch from the consumer group (first
 * this consumer's own pending entries, then entries idle too long in other
 * consumers, then new ones), asks Redis for the next batch, and hands this
 * one to a writer thread. Each writer (`writers`, default 2; one MySQL and
 * one Redis connection each) writes its batch in one transaction and only
 * after COMMIT acknowledges it. A crash anywhere leaves the entries
 * pending, and re-delivery is idempotent (see writer.c), so nothing is lost
 * or stored twice. The main thread also trims the stream and samples the
 * group for the metrics, which a third thread serves over HTTP.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage.
 */
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "mysql_url.h"
#include "options.h"
#include "reader.h"
#include "util.h"
#include "writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000
#define PROGRESS_EVERY_MS 10000

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    stopping = sig;
}

/* Sleeps ms in short slices; returns -1 as soon as a stop was asked. */
static int nap(uint64_t ms)
{
    uint64_t end = pl_mono_ms() + ms;
    while (!stopping) {
        uint64_t now = pl_mono_ms();
        if (now >= end)
            return 0;
        uint64_t left = end - now;
        struct timespec ts = {0, (long)((left < 50 ? left : 50) * 1000000)};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static uint64_t next_backoff(uint64_t ms)
{
    ms *= 2;
    return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

/* Where a batch came from. */
enum source {
    SRC_PENDING, /* our own pending entries, re-read from an ID */
    SRC_CLAIM,   /* XAUTOCLAIMed from another consumer */
    SRC_NEW,     /* never delivered before (">") */
};

enum loop_rc {
    LOOP_OK,      /* batch committed and acknowledged */
    LOOP_STOPPED, /* a stop arrived while retrying; the batch stays pending */
    LOOP_FATAL,   /* cannot go on (schema or permissions) */
};

typedef struct arch {
    const pl_arch_config_t *cfg;
    int drain;
    pl_reader_t *reader;
    enum source phase;   /* SRC_PENDING until our own pending list is read, then SRC_NEW */
    char pend_from[48];  /* next ID to re-read our pending entries after */
    int outstanding_src; /* source of the read sent ahead (prefetch) */
    char claim_cursor[48];
    uint64_t next_claim_at, claim_every;
    uint64_t next_trim_at, next_progress_at;
    pl_arch_batch_t batch;
    uint64_t last_rows;
    int64_t block_ms; /* BLOCK for new entries (shorter for drain) */
    /* Writer threads: each has its own MySQL connection and its own Redis
     * connection for acks, so batches commit in parallel (MariaDB runs one
     * thread per connection). The main thread reads and hands batches over
     * through a one-slot queue. */
    struct worker *workers;
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* a batch is in the slot, or quit */
    pthread_cond_t cv_free; /* the slot was emptied */
    pl_arch_batch_t slot;   /* guarded by mu */
    int slot_full, quit;    /* guarded by mu */
    atomic_int fatal;       /* a worker met an error retrying cannot fix */
} arch_t;

typedef struct worker {
    arch_t *a;
    int id;
    pthread_t thread;
    pl_writer_t *writer;
    pl_reader_t *acker; /* only its control connection is used: XACK, dead letters */
    pl_arch_batch_t batch;
} worker_t;

static void update_gauges(const pl_arch_group_stats_t *st)
{
    atomic_store(&pl_arch_metrics.stream_pending, st->pending);
    atomic_store(&pl_arch_metrics.stream_lag, st->lag);
    atomic_store(&pl_arch_metrics.stream_length, st->length);
}

/* (Re)connects r with backoff. Returns 0, or -1 if stopped. */
static int connect_backoff(pl_reader_t *r)
{
    uint64_t delay = BACKOFF_MIN_MS;
    int logged = 0;
    /* One attempt even when stopping: a committed batch still wants its ack. */
    do {
        if (pl_reader_connect(r) == 0) {
            if (logged)
                pl_log_info("redis connection restored");
            return 0;
        }
        pl_arch_metrics_error(ERRK_REDIS);
        if (!logged || pl_log_level >= PL_LOG_DEBUG)
            pl_log_warn("cannot connect to redis, retrying\terror=\"%s\" retry_ms=%llu",
                        pl_reader_error(r), (unsigned long long)delay);
        logged = 1;
        if (nap(delay) < 0)
            break;
        delay = next_backoff(delay);
    } while (!stopping);
    return -1;
}

/* Connects the main reader; returns 0, or -1 if stopped. */
static int redis_connect(arch_t *a)
{
    if (connect_backoff(a->reader) < 0)
        return -1;
    /* Whatever was delivered to us and not acked is pending again under our
     * name: re-read it before anything new. (Batches still in a writer get
     * written twice; the second time they count as duplicates.) */
    a->phase = SRC_PENDING;
    strcpy(a->pend_from, "0");
    return 0;
}

static void reader_failed(pl_reader_t *r, const char *when)
{
    pl_arch_metrics_error(ERRK_REDIS);
    pl_log_warn("redis failed, reconnecting\twhen=%s error=\"%s\"", when, pl_reader_error(r));
    pl_reader_disconnect(r);
}

static void redis_failed(arch_t *a, const char *when)
{
    reader_failed(a->reader, when);
}

/* Writes the batch to MySQL until it commits, then acks it in Redis until
 * that succeeds. */
static enum loop_rc process(worker_t *wk, pl_arch_batch_t *b)
{
    size_t n = b->n;
    pl_arch_row_t *rows = pl_xmalloc((n ? n : 1) * sizeof(*rows));
    size_t *row_entry = pl_xmalloc((n ? n : 1) * sizeof(*row_entry));
    uint8_t *status = pl_xmalloc(n ? n : 1);
    pl_arch_dead_t *dead = pl_xmalloc((n ? n : 1) * sizeof(*dead));
    pl_arch_bytes_t *ids = pl_xmalloc((n ? n : 1) * sizeof(*ids));
    pl_arch_mark_t *marks = pl_xmalloc((n ? n : 1) * sizeof(*marks));
    size_t nrows = 0, ndead = 0;
    enum loop_rc rc = LOOP_OK;

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
        uint64_t delay = BACKOFF_MIN_MS;
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
                rc = LOOP_FATAL;
                goto out;
            }
            failures++;
            if (failures == 1 || pl_log_level >= PL_LOG_DEBUG || failures % 20 == 0)
                pl_log_warn("mysql write failed, retrying\terror=\"%s\" attempt=%d retry_ms=%llu "
                            "rows=%zu",
                            pl_writer_error(wk->writer), failures, (unsigned long long)delay,
                            nrows);
            if (nap(delay) < 0) {
                pl_log_warn("stopping with an uncommitted batch; it stays pending\trows=%zu",
                            nrows);
                rc = LOOP_STOPPED;
                goto out;
            }
            delay = next_backoff(delay);
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
    uint64_t delay = BACKOFF_MIN_MS;
    for (;;) {
        if (!pl_reader_connected(wk->acker) && connect_backoff(wk->acker) < 0)
            goto unacked;
        if (pl_reader_mark_archived(wk->acker, marks, nmarks) == 0 &&
            pl_reader_ack(wk->acker, ids, n, dead, ndead) == 0)
            break;
        reader_failed(wk->acker, "ack");
        if (nap(delay) < 0)
            goto unacked;
        delay = next_backoff(delay);
    }
    atomic_fetch_add(&pl_arch_metrics.dead_letters, ndead);
    goto out;
unacked:
    pl_log_warn("stopping before the ack of a committed batch; it will be re-delivered and "
                "recognised as duplicates\tentries=%zu",
                n);
    rc = LOOP_STOPPED;
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
    arch_t *a = wk->a;
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

        enum loop_rc rc = process(wk, &wk->batch);
        pl_arch_batch_clear(&wk->batch);
        if (rc == LOOP_FATAL) {
            atomic_store(&a->fatal, 1);
            pthread_mutex_lock(&a->mu);
            pthread_cond_broadcast(&a->cv_free);
            pthread_mutex_unlock(&a->mu);
        }
    }
    return NULL;
}

/* Hands a->batch to a writer thread (waiting for the slot), leaving an
 * empty batch in its place. Returns -1 if a writer failed fatally. */
static int dispatch(arch_t *a)
{
    pthread_mutex_lock(&a->mu);
    while (a->slot_full && !atomic_load(&a->fatal))
        pthread_cond_wait(&a->cv_free, &a->mu);
    if (atomic_load(&a->fatal)) {
        pthread_mutex_unlock(&a->mu);
        pl_arch_batch_clear(&a->batch);
        return -1;
    }
    pl_arch_batch_t tmp = a->slot;
    a->slot = a->batch;
    a->batch = tmp;
    a->slot_full = 1;
    pthread_cond_signal(&a->cv_work);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

static void start_workers(arch_t *a, const pl_redis_url_t *rurl, const pl_mysql_url_t *murl,
                          const char *consumer)
{
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
        w->a = a;
        w->id = i;
        w->writer = pl_writer_new(murl);
        w->acker = pl_reader_new(rurl, a->cfg->stream, a->cfg->group, consumer, a->cfg->block_ms);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pl_log_error("pthread_create() failed for a writer");
            abort();
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Lets the writers finish what they hold (and the slot), then joins them. */
static void stop_workers(arch_t *a)
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

    while (!stopping && !atomic_load(&a->fatal)) {
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
            if (atomic_load(&a->fatal))
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
        if (!stopping && !(a->phase == SRC_NEW && pl_mono_ms() >= a->next_claim_at)) {
            const char *from = a->phase == SRC_PENDING ? a->pend_from : ">";
            if (pl_reader_send_read(a->reader, from, a->cfg->batch_size, a->block_ms) == 0)
                a->outstanding_src = a->phase;
            else
                redis_failed(a, "prefetch");
        }
        if (dispatch(a) < 0)
            break;
        maybe_trim(a, 0);
    }
    /* A read sent ahead may have delivered entries we did not process:
     * write them too rather than leave them pending under a consumer name
     * that may never come back. */
    if (pl_reader_outstanding(a->reader) && !atomic_load(&a->fatal)) {
        enum source src;
        if (next_batch(a, &src) == 0 && a->batch.n > 0)
            dispatch(a);
    }
    /* The writers finish (commit and ack) the batches they hold. */
    stop_workers(a);
    if (atomic_load(&a->fatal))
        return 1;
    maybe_trim(a, 1);
    if (pl_reader_connected(a->reader) && pl_reader_forget_consumer(a->reader) == 1)
        pl_log_debug("left the consumer group (nothing pending under our name)");
    if (done)
        return 0;
    pl_log_info("stopped\tsignal=%d rows_written=%llu", (int)stopping,
                (unsigned long long)atomic_load(&pl_arch_metrics.rows_written));
    return a->drain ? 1 : 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: parley-archiver [-c FILE] COMMAND [--key value ...]\n"
                 "\n"
                 "commands:\n"
                 "  run      archive until SIGTERM/SIGINT (finishes the batch in flight)\n"
                 "  drain    archive until the stream is caught up, then exit 0\n"
                 "           (1 if stopped by a signal first)\n"
                 "  migrate  apply the missing SQL migrations, then exit 0\n"
                 "\n"
                 "options (also `key = value` in FILE and PARLEY_<KEY> in the environment):\n");
    pl_config_usage(pl_arch_options, out);
    fprintf(out, "\nexit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage\n");
}

int main(int argc, char **argv)
{
    pl_log_init("parley-archiver", -1);
    const char *file = NULL, *command = NULL;
    char **opts = pl_xcalloc((size_t)argc + 1, sizeof(char *));
    int nopts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(opts);
            return 0;
        } else if (strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "parley-archiver: -c needs a file\n");
                free(opts);
                return 2;
            }
            file = argv[++i];
        } else if (strncmp(a, "--", 2) == 0) {
            opts[nopts++] = argv[i];
            if (strchr(a, '=') == NULL && i + 1 < argc)
                opts[nopts++] = argv[++i];
        } else if (command == NULL) {
            command = a;
        } else {
            fprintf(stderr, "parley-archiver: unexpected argument '%s'\n", a);
            free(opts);
            return 2;
        }
    }
    if (command == NULL || (strcmp(command, "run") != 0 && strcmp(command, "drain") != 0 &&
                            strcmp(command, "migrate") != 0)) {
        if (command)
            fprintf(stderr, "parley-archiver: unknown command '%s'\n", command);
        usage(stderr);
        free(opts);
        return 2;
    }

    pl_arch_config_t cfg = {0};
    char err[512];
    if (pl_config_load(pl_arch_options, &cfg, file, nopts, opts, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-archiver: %s\n", err);
        pl_config_free(pl_arch_options, &cfg);
        free(opts);
        return 2;
    }
    free(opts);
    pl_log_level = pl_log_level_parse(cfg.log_level);

    pl_mysql_url_t murl;
    if (pl_mysql_url_parse(cfg.mysql_url, &murl, err, sizeof(err)) < 0 || murl.database == NULL) {
        if (murl.host || murl.socket)
            snprintf(err, sizeof(err), "'%s' names no database", cfg.mysql_url);
        fprintf(stderr, "parley-archiver: mysql_url: %s\n", err);
        pl_mysql_url_free(&murl);
        pl_config_free(pl_arch_options, &cfg);
        return 2;
    }
    pl_redis_url_t rurl;
    if (pl_redis_url_parse(cfg.redis_url, &rurl, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-archiver: redis_url: %s\n", err);
        pl_mysql_url_free(&murl);
        pl_config_free(pl_arch_options, &cfg);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: let sleeps return early */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    mysql_library_init(0, NULL, NULL);

    char desc[512];
    int code;
    if (strcmp(command, "migrate") == 0) {
        const char *dir = pl_migrate_default_dir(cfg.migrations_dir);
        pl_log_info("migrating\tmysql=\"%s\" dir=\"%s\"",
                    pl_mysql_url_describe(&murl, desc, sizeof(desc)), dir);
        int transient;
        code = pl_migrate_run(&murl, dir, &transient) == 0 ? 0 : 1;
        goto done;
    }

    char consumer[300];
    if (cfg.consumer[0]) {
        snprintf(consumer, sizeof(consumer), "%s", cfg.consumer);
    } else {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(consumer, sizeof(consumer), "%s-%d", host, (int)getpid());
    }

    if (cfg.metrics_listen[0]) {
        /* The server thread must not take SIGTERM/SIGINT from main. */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = pl_arch_metrics_start(cfg.metrics_listen, err, sizeof(err));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc < 0) {
            pl_log_error("cannot start metrics server\terror=\"%s\"", err);
            code = 1;
            goto done;
        }
    }

    pl_log_info("starting\tcommand=%s stream=%s group=%s consumer=%s batch_size=%lld "
                "writers=%lld mysql=\"%s\"",
                command, cfg.stream, cfg.group, consumer, (long long)cfg.batch_size,
                (long long)cfg.writers, pl_mysql_url_describe(&murl, desc, sizeof(desc)));
    arch_t a = {0};
    a.cfg = &cfg;
    a.drain = strcmp(command, "drain") == 0;
    a.reader = pl_reader_new(&rurl, cfg.stream, cfg.group, consumer, cfg.block_ms);
    a.nworkers = (int)cfg.writers;
    start_workers(&a, &rurl, &murl, consumer);
    code = archive(&a);
    pl_arch_batch_clear(&a.batch);
    free(a.batch.entries);
    free(a.batch.fieldbuf);
    pl_reader_free(a.reader);

done:
    pl_redis_url_free(&rurl);
    pl_mysql_url_free(&murl);
    pl_config_free(pl_arch_options, &cfg);
    mysql_library_end();
    return code;
}
