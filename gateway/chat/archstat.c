/*
 * The archive stream's backlog on the gateway's /metrics (docs/ops.md
 * "Archive stream"): parley_archive_stream_length and
 * parley_archive_oldest_unarchived_seconds, so a stopped or stuck archiver
 * shows before parley:archive eats Redis's memory.
 *
 * Every worker registers the two gauges (ids must match across workers);
 * only worker 0 reads the stream, with the archstat script every
 * ARCHSTAT_MS, and sets them, so the sum over workers is the value. Off
 * when archive is off (there is no stream). Not more than one read in
 * flight: a stalled Redis gets no pile of them.
 */
#include "chat.h"
#include "keys.h"
#include "log.h"
#include "script.h"

#define ARCHSTAT_MS 2000

static int m_length = -1, m_age = -1;
static struct event *tick;  /* worker 0 only; NULL elsewhere */
static int inflight;        /* a read is out: skip ticks until it answers */
static pl_metrics_t *block; /* this worker's metrics block */

static void set_gauge(int id, int64_t v)
{
    if (id >= 0 && id < PL_METRICS_EXTRA)
        block->extra[id] = v;
}

static void on_stats(void *arg, redisReply *r)
{
    (void)arg;
    inflight = 0;
    /* NULL: the link dropped or the worker is stopping; keep the last values */
    if (r == NULL)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        pl_log_warn("archive stream stats: unexpected reply\ttype=%d error=\"%s\"", r->type,
                    r->type == REDIS_REPLY_ERROR ? r->str : "");
        return;
    }
    set_gauge(m_length, r->element[0]->integer);
    set_gauge(m_age, r->element[1]->integer / 1000);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proto_t *p = arg;
    if (inflight)
        return;
    const char *keys[] = {PL_KEY_ARCHIVE};
    if (pl_script_call(p->bus, PL_SCRIPT_ARCHSTAT, 1, keys, 0, NULL, NULL, on_stats, NULL) == 0)
        inflight = 1;
}

void chat_archstat_start(proto_t *p)
{
    block = p->w->metrics;
    if (!p->w->cfg->archive || block == NULL)
        return;
    m_length = pl_metrics_register(block, "parley_archive_stream_length", "gauge",
                                   "Entries in the archive stream (parley:archive), read by "
                                   "worker 0 every 2 s.");
    m_age = pl_metrics_register(block, "parley_archive_oldest_unarchived_seconds", "gauge",
                                "Age of the oldest archive stream entry the archiver has not "
                                "acknowledged (0 = caught up), read by worker 0 every 2 s.");
    if (p->w->index != 0)
        return;
    tick = event_new(p->w->base, -1, EV_PERSIST, on_tick, p);
    struct timeval tv = {ARCHSTAT_MS / 1000, (ARCHSTAT_MS % 1000) * 1000};
    evtimer_add(tick, &tv);
}

void chat_archstat_stop(void)
{
    if (tick)
        event_free(tick);
    tick = NULL;
}
