/*
 * The seq guard (docs/protocol.md 2.1): a room's seq never goes backwards
 * because Redis forgot it. Redis can come back from a restart with an
 * older snapshot (RDB, or an append-only file that lost its last second),
 * or lose a key to eviction; the next INCR then hands out seqs that were
 * already delivered, and every member past them would drop the new
 * messages as duplicates. So when the command link comes (back) up, every
 * room and DM stream this worker knows is raised, before the worker sends
 * into it again, to at least the highest seq it delivered or had
 * acknowledged there; with MySQL also to MySQL's MAX(seq) for the room
 * (rooms only the archive remembers). The raise is one script call
 * pipelined first on the new link, so nothing this worker sends can
 * overtake it; its sends for the room wait on the room's guard until the
 * reply (and the MySQL step) is in. A raise that fails (Redis still
 * LOADING, MySQL down) answers the held sends unavailable, and so are new
 * ones, until a retry 250 ms later succeeds.
 *
 * The same script keeps the seq keys of local DM streams alive on the
 * heartbeat (rooms are kept by the presence script), and raises a room
 * back when stream.c sees a regression anyway.
 */
#include "chat.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "script.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_HELD_MAX 1024 /* sends held per room while its raise runs */
#define GUARD_RETRY_MS 250

enum guard_stage {
    G_RAISE, /* the raise to the worker's own floor is in flight */
    G_DB,    /* MySQL's MAX(seq) is being looked up, or the raise to it runs */
    G_RETRY, /* a step failed: sends answer unavailable until the retry */
};

typedef struct guard {
    char room[PL_ROOM_MAX + 1];
    int64_t floor; /* highest seq delivered or acknowledged here */
    uint64_t gen;  /* replies of an older run are ignored */
    enum guard_stage stage;
    req_t *held, **tail; /* sends waiting, in arrival order (req_t.snext) */
    size_t nheld;
} guard_t;

/* One step in flight: the room by name (the guard may be gone). */
typedef struct step {
    proto_t *p;
    char room[PL_ROOM_MAX + 1];
    uint64_t gen;
    int64_t floor;
    int last; /* the last step: release the held sends on success */
} step_t;

static uint64_t guard_gen;

/* The TTL a raised or kept seq key gets at least: as long as a presence
 * key lives (the room has members), and never less than history_ttl. */
static int64_t keep_ttl(proto_t *p)
{
    int64_t t = p->w->cfg->history_ttl;
    return t > PRESENCE_KEY_TTL_MS ? t : PRESENCE_KEY_TTL_MS;
}

static void on_ignore(void *arg, redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_warn("seq guard script failed\terror=\"%s\"", r->str);
    }
}

/* Runs the seq script for room: raise to floor, keep alive, create when
 * asked (archived: "" or the marker for a created key). */
static int seq_call(proto_t *p, const char *room, int64_t floor, int create, const char *archived,
                    pl_bus_reply_fn fn, void *arg)
{
    char kseq[PL_KEY_MAX], karch[PL_KEY_MAX], fl[24], ttl[24];
    pl_key_seq(kseq, room);
    pl_key_archived(karch, room);
    snprintf(fl, sizeof(fl), "%" PRId64, floor);
    snprintf(ttl, sizeof(ttl), "%" PRId64, keep_ttl(p));
    const char *keys[] = {kseq, karch};
    const char *args[SEQ_NARGS];
    args[SEQ_FLOOR] = fl;
    args[SEQ_TTL] = ttl;
    args[SEQ_CREATE] = create ? "1" : "0";
    args[SEQ_ARCHIVED] = archived;
    return pl_script_call(p->bus, PL_SCRIPT_SEQ, 2, keys, SEQ_NARGS, args, NULL, fn, arg);
}

/* Logs a raise that found Redis behind: {raised, seq before}. Returns -1
 * on an error reply or a lost link. */
static int seq_reply(const char *room, int64_t floor, redisReply *r)
{
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_warn("seq guard: raise failed, sends to the room wait\troom=%s error=\"%s\"", room,
                    r->str);
        return -1;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1)
        pl_log_warn(
            "redis had lost this room's seq, raised back\troom=%s from=%lld to=%" PRId64, room,
            r->element[1]->type == REDIS_REPLY_INTEGER ? r->element[1]->integer : -1LL, floor);
    return 0;
}

/* ---- guards ---- */

static void fail_held(guard_t *g)
{
    req_t *q = g->held;
    g->held = NULL;
    g->tail = &g->held;
    g->nheld = 0;
    while (q) {
        req_t *next = q->snext;
        q->snext = NULL;
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
        q = next;
    }
}

/* The raise is done: forget the guard, run what it held, in order. */
static void release(proto_t *p, guard_t *g)
{
    req_t *q = g->held;
    pl_map_del(&p->guards, g->room);
    free(g);
    while (q) {
        req_t *next = q->snext;
        q->snext = NULL;
        chat_send_go(p, q);
        q = next;
    }
}

static void schedule_retry(proto_t *p)
{
    if (p->guard_retry == NULL)
        return;
    if (!evtimer_pending(p->guard_retry, NULL)) {
        struct timeval tv = {0, GUARD_RETRY_MS * 1000};
        evtimer_add(p->guard_retry, &tv);
    }
}

static void failed(proto_t *p, guard_t *g)
{
    g->stage = G_RETRY;
    fail_held(g);
    if (pl_bus_ready(p->bus))
        schedule_retry(p); /* else the next link up runs every guard again */
}

static void run(proto_t *p, guard_t *g);

static guard_t *step_guard(step_t *st)
{
    guard_t *g = pl_map_get(&st->p->guards, st->room);
    return g && g->gen == st->gen ? g : NULL;
}

static void on_db_raised(void *arg, redisReply *r)
{
    step_t *st = arg;
    guard_t *g = step_guard(st);
    int rc = seq_reply(st->room, st->floor, r);
    proto_t *p = st->p;
    free(st);
    if (g == NULL)
        return;
    if (rc < 0)
        failed(p, g);
    else
        release(p, g);
}

static void on_db_floor(void *arg, int status, int64_t max)
{
    step_t *st = arg;
    proto_t *p = st->p;
    guard_t *g = step_guard(st);
    if (g == NULL) {
        free(st);
        return;
    }
    if (status < 0) {
        free(st);
        failed(p, g);
        return;
    }
    if (max > g->floor)
        g->floor = max;
    st->floor = g->floor;
    /* the marker of a key created here: what MySQL holds is archived */
    char arch[24] = "";
    if (max > 0)
        snprintf(arch, sizeof(arch), "%" PRId64, max);
    if (seq_call(p, g->room, g->floor, g->floor > 0, arch, on_db_raised, st) < 0) {
        free(st);
        failed(p, g);
    }
}

static void on_raised(void *arg, redisReply *r)
{
    step_t *st = arg;
    proto_t *p = st->p;
    guard_t *g = step_guard(st);
    int rc = seq_reply(st->room, st->floor, r);
    if (g == NULL) {
        free(st);
        return;
    }
    if (rc < 0) {
        free(st);
        failed(p, g);
        return;
    }
    if (st->last) {
        free(st);
        release(p, g);
        return;
    }
    /* with MySQL: the room's MAX(seq) there (hint 0: MySQL's own answer) */
    g->stage = G_DB;
    pl_history_seq_floor(p->db, g->room, 0, on_db_floor, st);
}

/* Starts (again) the raise of g's room. */
static void run(proto_t *p, guard_t *g)
{
    g->gen = ++guard_gen;
    g->stage = G_RAISE;
    step_t *st = pl_xcalloc(1, sizeof(*st));
    st->p = p;
    snprintf(st->room, sizeof(st->room), "%s", g->room);
    st->gen = g->gen;
    st->floor = g->floor;
    st->last = p->db == NULL;
    /* without MySQL the worker's floor is all there is: create a missing
     * key at it. With MySQL a missing key is left to the MySQL step (and
     * to the send script's noseq floor). */
    if (seq_call(p, g->room, g->floor, p->db == NULL, "", on_raised, st) < 0) {
        free(st);
        failed(p, g);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proto_t *p = arg;
    if (!pl_bus_ready(p->bus))
        return;
    size_t i, n = 0;
    char **names = pl_xcalloc(p->guards.n + 1, sizeof(*names));
    for (pl_map_entry_t *e = pl_map_first(&p->guards, &i); e; e = pl_map_next(&p->guards, e, &i))
        if (((guard_t *)e->val)->stage == G_RETRY)
            names[n++] = pl_xstrdup(e->key);
    for (size_t k = 0; k < n; k++) {
        guard_t *g = pl_map_get(&p->guards, names[k]);
        if (g && g->stage == G_RETRY)
            run(p, g);
        free(names[k]);
    }
    free(names);
}

/* Adds room to the guards with at least floor. */
static void guard_add(proto_t *p, const char *room, int64_t floor)
{
    guard_t *g = pl_map_get(&p->guards, room);
    if (g == NULL) {
        g = pl_xcalloc(1, sizeof(*g));
        snprintf(g->room, sizeof(g->room), "%s", room);
        g->tail = &g->held;
        pl_map_put(&p->guards, g->room, g);
    }
    if (floor > g->floor)
        g->floor = floor;
}

static void guard_add_dm(proto_t *p, dmstream_t *d, void *arg)
{
    int64_t floor = d->last > d->acked ? d->last : d->acked;
    if (floor > 0 || p->db)
        guard_add(p, d->room, floor);
}

void chat_guard_cmd_up(proto_t *p)
{
    if (p->guard_retry == NULL)
        p->guard_retry = evtimer_new(p->w->base, on_retry, p);
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->rooms.rooms, &i); e;
         e = pl_map_next(&p->rooms.rooms, e, &i)) {
        pl_room_t *r = e->val;
        int64_t floor = r->have_base ? r->last_seq : 0;
        if (r->max_acked > floor)
            floor = r->max_acked;
        /* a room with nothing known here needs no raise without MySQL */
        if (floor > 0 || p->db)
            guard_add(p, r->name, floor);
    }
    chat_dm_each(p, guard_add_dm, NULL);
    /* every guard (also one left from an earlier link) runs on this link */
    for (pl_map_entry_t *e = pl_map_first(&p->guards, &i); e; e = pl_map_next(&p->guards, e, &i))
        ((guard_t *)e->val)->stage = G_RETRY;
    on_retry(-1, 0, p);
}

int chat_guard_hold(proto_t *p, req_t *q)
{
    guard_t *g = pl_map_get(&p->guards, q->room);
    if (g == NULL)
        return 0;
    if (g->stage == G_RETRY || g->nheld >= GUARD_HELD_MAX) {
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
        return 1;
    }
    q->snext = NULL;
    *g->tail = q;
    g->tail = &q->snext;
    g->nheld++;
    return 1;
}

void chat_guard_raise(proto_t *p, const char *room, int64_t floor)
{
    /* with MySQL a missing key stays missing: the send script's floor path
     * asks MySQL (which knows more than this worker) */
    if (seq_call(p, room, floor, p->db == NULL, "", on_ignore, NULL) < 0)
        pl_log_warn("seq guard: redis down, room not raised\troom=%s", room);
}

static void keep_dm(proto_t *p, dmstream_t *d, void *arg)
{
    if (d->last > 0 || d->acked > 0)
        (void)seq_call(p, d->room, 0, 0, "", on_ignore, NULL);
}

void chat_guard_keep_dms(proto_t *p)
{
    chat_dm_each(p, keep_dm, NULL);
}

void chat_guard_stop(proto_t *p)
{
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->guards, &i); e; e = pl_map_next(&p->guards, e, &i)) {
        guard_t *g = e->val;
        fail_held(g);
        free(g);
    }
    pl_map_clear(&p->guards);
    if (p->guard_retry)
        event_free(p->guard_retry);
    p->guard_retry = NULL;
}
