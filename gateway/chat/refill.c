/*
 * Refills (issue 13; docs/protocol.md "gap"): the messages a stream of
 * this worker is missing, (after, upto], read with bounds. What the room's
 * recent zset holds comes from Redis; the part below it that Redis no
 * longer holds comes from MariaDB (the same stitch as history, see
 * store/history.c for why the two join without a hole). What exists
 * nowhere, or is past the bounds, is handed back as one gap range below
 * every message, which the caller announces with {"ev":"gap"} instead of
 * jumping silently.
 *
 * Bounds, per refill (so per member: every member of the stream gets the
 * same messages): at most recover_max messages and send_buffer_limit / 4
 * bytes. A plain refill (join recovery, DM streams' catch-up) does not read
 * a range longer than that at all. A chunked refill (the room stream's
 * catch-up, chat_refill_chunk) reads the oldest part of the range that
 * fits those bounds instead and hands it back with res->upto still the
 * range's end: the caller delivers it and asks for the next chunk once its
 * members' output drained (stream.c), so a long range is recovered in
 * bounded pieces. A chunk's MariaDB part ends at the first seq the recent
 * zset holds, or earlier; when MariaDB stays unreachable, its gap is the
 * whole part only MariaDB holds (never one chunk after another of retries).
 */
#include "chat.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "util.h"
#include "ws.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MYSQL_TRIES 3       /* attempts at the MariaDB part before it is a gap */
#define MYSQL_RETRY_MS 1000 /* between them */

int chat_m_gap_events = -1;
int chat_m_refill_redis = -1;
int chat_m_refill_mysql = -1;
int chat_l_recover_max = -1;
int chat_l_refill_max = -1;
int chat_l_stream_queue = -1;
int chat_l_history_wait = -1;
int chat_l_redis_queue = -1;

typedef struct refill {
    proto_t *p;
    char room[PL_ROOM_MAX + 1];
    int64_t after, upto;
    int64_t below;            /* what the recent zset does not hold is (after, below] */
    int64_t hi;               /* the MariaDB part asked for is (after, hi], hi <= below */
    int chunk;                /* chat_refill_chunk: read what fits the bounds, never over */
    int tries;                /* MariaDB attempts so far */
    struct event *retry;      /* MariaDB retry timer, NULL when none */
    pl_history_page_t recent; /* the Redis part, kept */
    size_t recent_bytes;
    chat_refill_fn cb;
    void *arg;
    struct refill *prev, *next; /* on the worker's list (freed at stop) */
} refill_t;

/* Refills in flight on this worker (one worker per process). */
static refill_t *inflight;

void chat_refill_start(pl_metrics_t *m)
{
    if (m) {
        chat_m_gap_events =
            pl_metrics_register(m, "parley_gap_events_total", "counter",
                                "gap events sent to clients: missing seqs a refill could not "
                                "deliver (past refill_max, a DM stream past recover_max, or "
                                "stored nowhere reachable).");
        chat_m_refill_redis =
            pl_metrics_register(m, "parley_refill_messages_total{source=\"redis\"}", "counter",
                                "Messages a worker fetched to fill a gap in a stream, by source.");
        chat_m_refill_mysql =
            pl_metrics_register(m, "parley_refill_messages_total{source=\"mysql\"}", "counter",
                                "Messages a worker fetched to fill a gap in a stream, by source.");
    }
    chat_l_recover_max = pl_metrics_limit_register("recover_max");
    chat_l_refill_max = pl_metrics_limit_register("refill_max");
    chat_l_stream_queue = pl_metrics_limit_register("stream_queue_max");
    chat_l_history_wait = pl_metrics_limit_register("history_wait_max");
    chat_l_redis_queue = pl_metrics_limit_register("redis_queue_max");
}

void chat_refill_count(const chat_refill_res_t *res)
{
    chat_count(chat_m_refill_mysql, (int64_t)res->older->n);
    chat_count(chat_m_refill_redis, (int64_t)res->recent->n);
}

size_t chat_refill_byte_budget(const proto_t *p)
{
    return (size_t)(p->w->cfg->send_buffer_limit / 4);
}

pl_frame_t *chat_gap_frame(const char *room, int64_t from, int64_t to)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "ev", "gap", "room", room, "from",
                          (json_int_t)from, "to", (json_int_t)to);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    pl_frame_t *f = pl_frame_new(PL_WS_TEXT, s, strlen(s));
    free(s);
    return f;
}

static size_t page_bytes(const pl_history_page_t *pg, size_t from)
{
    size_t b = 0;
    for (size_t i = from; i < pg->n; i++)
        b += pg->v[i].len;
    return b;
}

/* How many of pg's first messages fit in budget bytes: at least one (a
 * chunk always advances), at most pg->n. */
static size_t fit_budget(const pl_history_page_t *pg, size_t budget)
{
    size_t b = 0, k = 0;
    for (; k < pg->n; k++) {
        b += pg->v[k].len;
        if (b > budget && k > 0)
            break;
    }
    return k;
}

static void unlink_refill(refill_t *rf)
{
    if (rf->prev)
        rf->prev->next = rf->next;
    else
        inflight = rf->next;
    if (rf->next)
        rf->next->prev = rf->prev;
}

/* Hands the result to the caller and frees rf. */
static void finish(refill_t *rf, int status, int64_t gap_from, int64_t gap_to, int over,
                   const pl_history_page_t *older)
{
    chat_refill_res_t res = {0};
    res.status = status;
    res.upto = rf->upto;
    if (status == 0 && gap_from > 0 && gap_to >= gap_from) {
        res.gap_from = gap_from;
        res.gap_to = gap_to;
    }
    res.over = over;
    pl_history_page_t none = {0};
    res.older = older && !over ? older : &none;
    res.recent = status == 0 && !over ? &rf->recent : &none;
    if (over)
        chat_limit(chat_l_recover_max);
    unlink_refill(rf);
    if (rf->retry)
        event_free(rf->retry);
    rf->cb(rf->arg, &res);
    pl_history_page_free(&rf->recent);
    free(rf);
}

static void ask_mysql(refill_t *rf);

static void on_mysql_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ask_mysql(arg);
}

static void on_mysql(void *arg, int status, pl_history_page_t *page)
{
    refill_t *rf = arg;
    proto_t *p = rf->p;
    if (status < 0) {
        /* p->refetch is NULL once the worker stops: no retry then */
        if (++rf->tries < MYSQL_TRIES && p->refetch) {
            if (rf->retry == NULL)
                rf->retry = evtimer_new(p->w->base, on_mysql_retry, rf);
            struct timeval tv = {MYSQL_RETRY_MS / 1000, (MYSQL_RETRY_MS % 1000) * 1000};
            evtimer_add(rf->retry, &tv);
            return;
        }
        pl_log_warn("refill: mariadb unreachable, announcing a gap\troom=%s from=%" PRId64
                    " to=%" PRId64 " tries=%d",
                    rf->room, rf->after + 1, rf->below, rf->tries);
        finish(rf, 0, rf->after + 1, rf->below, 0, NULL);
        return;
    }
    /* the part that joins the Redis part (or the next chunk): a run of
     * seqs ending at hi */
    size_t j = page->n;
    if (j > 0 && page->v[j - 1].seq == rf->hi) {
        j--;
        while (j > 0 && page->v[j - 1].seq == page->v[j].seq - 1 && page->v[j - 1].seq > rf->after)
            j--;
    }
    pl_history_page_t older = {page->v + j, page->n - j, 0, NULL};
    size_t budget = chat_refill_byte_budget(p);
    size_t older_bytes = page_bytes(&older, 0);
    if (older_bytes + rf->recent_bytes > budget) {
        if (!rf->chunk) {
            finish(rf, 0, rf->after + 1, rf->upto, 1, NULL);
            return;
        }
        /* a chunk: the oldest that fit; the Redis part only when all of
         * the MariaDB part fits (it lies above it) */
        size_t k = fit_budget(&older, budget);
        if (k < older.n) {
            older.n = k;
            older_bytes = page_bytes(&older, 0);
            rf->recent.n = 0;
        } else {
            size_t n = 0, b = older_bytes;
            while (n < rf->recent.n && b + rf->recent.v[n].len <= budget)
                b += rf->recent.v[n++].len;
            rf->recent.n = n;
        }
    }
    int64_t first = older.n ? older.v[0].seq : rf->hi + 1;
    if (first > rf->after + 1)
        pl_log_warn("refill: messages stored nowhere, announcing a gap\troom=%s from=%" PRId64
                    " to=%" PRId64,
                    rf->room, rf->after + 1, first - 1);
    finish(rf, 0, rf->after + 1, first - 1, 0, &older);
}

static void ask_mysql(refill_t *rf)
{
    /* the newest (below - after) rows under below + 1: exactly the range
     * when MariaDB holds it all (recover_max <= PL_DB_HISTORY_MAX) */
    pl_history_older(rf->p->db, rf->room, rf->hi + 1, (int)(rf->hi - rf->after), on_mysql, rf);
}

static void on_range(void *arg, int status, pl_history_page_t *page)
{
    refill_t *rf = arg;
    if (status < 0) {
        finish(rf, -1, 0, 0, 0, NULL);
        return;
    }
    size_t bytes = page_bytes(page, 0);
    size_t budget = chat_refill_byte_budget(rf->p);
    if (bytes > budget && !rf->chunk) {
        finish(rf, 0, rf->after + 1, rf->upto, 1, NULL);
        return;
    }
    pl_history_page_keep(&rf->recent, page);
    if (bytes > budget) {
        rf->recent.n = fit_budget(&rf->recent, budget);
        bytes = page_bytes(&rf->recent, 0);
    }
    rf->recent_bytes = bytes;
    /* what the recent zset no longer holds: (after, below] */
    rf->below = rf->recent.n ? rf->recent.v[0].seq - 1 : rf->upto;
    rf->hi = rf->below;
    if (rf->chunk && rf->below - rf->after > rf->p->w->cfg->recover_max) {
        /* this chunk is MariaDB's only; the Redis part comes later */
        rf->hi = rf->after + rf->p->w->cfg->recover_max;
        rf->recent.n = 0;
        rf->recent_bytes = 0;
    }
    if (rf->below <= rf->after) {
        finish(rf, 0, 0, 0, 0, NULL);
        return;
    }
    if (rf->p->db == NULL) {
        pl_log_warn("refill: messages trimmed from redis and no mysql_url, announcing a gap"
                    "\troom=%s from=%" PRId64 " to=%" PRId64,
                    rf->room, rf->after + 1, rf->below);
        finish(rf, 0, rf->after + 1, rf->below, 0, NULL);
        return;
    }
    ask_mysql(rf);
}

/* (after, upto] is known: read it, or give it up as a gap when too long. */
static void read_range(refill_t *rf)
{
    int64_t n = rf->upto - rf->after;
    if (n <= 0) {
        finish(rf, 0, 0, 0, 0, NULL);
        return;
    }
    if (n > rf->p->w->cfg->recover_max) {
        if (!rf->chunk) {
            finish(rf, 0, rf->after + 1, rf->upto, 1, NULL);
            return;
        }
        n = rf->p->w->cfg->recover_max; /* the oldest ones: this chunk */
    }
    if (pl_history_range(rf->p->bus, rf->room, rf->after, rf->upto, (int)n, on_range, rf) < 0)
        finish(rf, -1, 0, 0, 0, NULL);
}

static void on_head(void *arg, redisReply *rep)
{
    refill_t *rf = arg;
    if (rep == NULL || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
        finish(rf, -1, 0, 0, 0, NULL);
        return;
    }
    /* no key (or one below us): nothing to read; the live stream tells */
    rf->upto = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    if (rf->upto < rf->after)
        rf->upto = rf->after;
    read_range(rf);
}

static int refill_new(proto_t *p, const char *room, int64_t after, int64_t upto, int chunk,
                      chat_refill_fn cb, void *arg)
{
    refill_t *rf = pl_xcalloc(1, sizeof(*rf));
    rf->chunk = chunk;
    rf->p = p;
    snprintf(rf->room, sizeof(rf->room), "%s", room);
    rf->after = after;
    rf->upto = upto;
    rf->cb = cb;
    rf->arg = arg;
    if (upto >= 0) {
        if (!pl_bus_ready(p->bus)) {
            free(rf);
            return -1;
        }
        rf->next = inflight;
        if (inflight)
            inflight->prev = rf;
        inflight = rf;
        read_range(rf); /* may finish (cb) before returning */
        return 0;
    }
    char key[PL_KEY_MAX];
    pl_key_seq(key, room);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};
    if (pl_bus_command(p->bus, on_head, rf, 2, argv, lens) < 0) {
        free(rf);
        return -1;
    }
    rf->next = inflight;
    if (inflight)
        inflight->prev = rf;
    inflight = rf;
    return 0;
}

int chat_refill(proto_t *p, const char *room, int64_t after, int64_t upto, chat_refill_fn cb,
                void *arg)
{
    return refill_new(p, room, after, upto, 0, cb, arg);
}

int chat_refill_chunk(proto_t *p, const char *room, int64_t after, int64_t upto, chat_refill_fn cb,
                      void *arg)
{
    return refill_new(p, room, after, upto, 1, cb, arg);
}

void chat_refill_stop(void)
{
    /* refills waiting to retry MariaDB: end them as Redis callbacks end
     * at stop, unavailable */
    refill_t *rf = inflight;
    while (rf) {
        refill_t *next = rf->next;
        if (rf->retry && evtimer_pending(rf->retry, NULL))
            finish(rf, -1, 0, 0, 0, NULL);
        rf = next;
    }
}
