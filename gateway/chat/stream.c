/*
 * The room-stream machine (docs/protocol.md 2; states and transitions in
 * chat.h): on this worker each room is a stream handed to its local
 * members strictly in seq order, each seq once (room->last_seq), and so is
 * each local user's dm room (dmstream_t), fed by the user's channel.
 *
 * Live messages arrive on the room channel; while the room is not READY
 * (subscription being confirmed, base seq or missed messages being
 * fetched after a join, a reconnect or a gap) they queue on the room and
 * are released after the fetch. A member joining with `since` is first
 * served from the recent zset up to the room's last_seq at that moment
 * while live messages queue on the member, so it sees neither a gap nor a
 * duplicate.
 *
 * This file knows nothing of envelopes or channel names: deliver.c parses
 * what the bus hands over and calls in here; join.c adds and removes
 * members.
 */
#include "chat.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "util.h"
#include "ws.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACE_MS 10        /* a chunked refill re-checks its members' output this often */
#define PACE_WAIT_MS 2000 /* and waits for it at most this long per chunk */

/* ===================================================================== */
/* fanout                                                                 */

/* Hands one message of the room stream to every local member except the
 * origin connection. The frame is shared: one reference per queue. */
/* Queues a live message (or gap event) on a recovering member; past
 * stream_queue_max or send_buffer_limit the member cannot catch up: its
 * connection closes with 1013 (the client rejoins with since). */
static void member_hold(pl_member_t *m, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    const pl_gw_config_t *cfg = ((pl_conn_t *)m->conn)->w->cfg;
    if (m->waiting)
        return; /* a long refill would fill its queue for nothing */
    if (pl_mqueue_full(&m->q, (size_t)cfg->stream_queue_max, (size_t)cfg->send_buffer_limit)) {
        if (m->q.n > 0) {
            chat_limit(chat_l_stream_queue);
            pl_conn_close(m->conn, PL_WS_CLOSE_TRY_AGAIN, "recovery queue full	limit=%s room=%s",
                          "stream_queue_max", m->room->name);
            pl_mqueue_clear(&m->q);
        }
        return;
    }
    pl_mqueue_push(&m->q, seq, origin, f);
}

static void fanout_msg(pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    pl_member_t *next;
    for (pl_member_t *m = r->members; m; m = next) {
        next = m->rnext;
        if (m->recovering) {
            member_hold(m, seq, f, origin);
            continue;
        }
        if (seq <= m->cursor)
            continue;
        m->cursor = seq;
        if (m->conn_id != origin) {
            pl_conn_send_frame(m->conn, f);
            chat_count(chat_m_deliveries, 1);
        }
    }
}

/* Tells every local member that from..to of the room's stream will not
 * come (issue 13: never a silent jump); a recovering member gets it after
 * its recovery, when its cursor is still below to. */
static void fanout_gap(pl_room_t *r, int64_t from, int64_t to)
{
    pl_log_warn("messages lost to this worker, gap announced\troom=%s from=%" PRId64 " to=%" PRId64
                " members=%zu",
                r->name, from, to, r->nmembers);
    pl_frame_t *f = chat_gap_frame(r->name, from, to);
    pl_member_t *next;
    for (pl_member_t *m = r->members; m; m = next) {
        next = m->rnext;
        if (m->recovering) {
            member_hold(m, to, f, 0);
            continue;
        }
        if (to <= m->cursor)
            continue;
        m->cursor = to;
        pl_conn_send_frame(m->conn, f);
        chat_count(chat_m_gap_events, 1);
    }
    pl_frame_unref(f);
}

void chat_user_fanout(proto_t *p, const char *user, pl_frame_t *f, uint64_t origin, int is_msg)
{
    const pl_user_conns_t *u = pl_user_get(&p->rooms, user);
    if (u == NULL || u->n == 0)
        return;
    /* copy: a send may close a connection, which edits the array */
    size_t n = u->n;
    pl_conn_t **cs = pl_xmalloc(n * sizeof(*cs));
    memcpy(cs, u->conns, n * sizeof(*cs));
    for (size_t i = 0; i < n; i++)
        if (cs[i]->id != origin) {
            pl_conn_send_frame(cs[i], f);
            if (is_msg)
                chat_count(chat_m_deliveries, 1);
        }
    free(cs);
}

/* ===================================================================== */
/* seq regressions (seqcheck.h, guard.c)                                  */

/* Remembers a message the stream handed out (for telling duplicates). */
static void note(pl_seqcheck_t *c, int64_t seq, const pl_frame_t *f)
{
    uint64_t id;
    int64_t ts;
    if (pl_seqcheck_parse(f->data, f->len, &id, &ts) == 0)
        pl_seqcheck_note(c, seq, id, ts);
}

/* A live message at or below the stream's last seq: 1 when it is a new
 * message under a used seq (Redis lost the seq), logged and counted; 0
 * for a copy of one already delivered. */
static int regression(pl_seqcheck_t *c, const char *what, const char *name, int64_t seq,
                      int64_t last, const pl_frame_t *f)
{
    uint64_t id;
    int64_t ts;
    (void)pl_seqcheck_parse(f->data, f->len, &id, &ts);
    if (pl_seqcheck_old(c, seq, id, ts) == PL_SEQ_DUP)
        return 0;
    if (ts > c->last_ts)
        c->last_ts = ts;
    chat_count(chat_m_seq_regressions, 1);
    pl_log_error("seq regression: a new message under a seq already delivered (redis lost the "
                 "seq); delivered anyway, seq raised back	%s=%s seq=%" PRId64
                 " last=%" PRId64,
                 what, name, seq, last);
    return 1;
}

/* Re-bases the room stream over a regressed message: every local member
 * gets it although their cursors are past its seq (the stream's position
 * stays: later messages continue above last_seq once Redis is raised back
 * to it, which this asks for). */
static void room_regression(proto_t *p, pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    if (!regression(&r->seen, "room", r->name, seq, r->last_seq, f))
        return;
    pl_member_t *next;
    for (pl_member_t *m = r->members; m; m = next) {
        next = m->rnext;
        if (m->conn_id != origin) {
            pl_conn_send_frame(m->conn, f);
            chat_count(chat_m_deliveries, 1);
        }
    }
    chat_guard_raise(p, r->name, r->last_seq);
}

/* The local connection a fetched message came from (0: another worker or
 * node, or unknown), for the same sender exclusion as live delivery. */
static uint64_t fetched_origin(proto_t *p, const pl_hmsg_t *h)
{
    if (h->node && h->worker == p->w->index && strcmp(h->node, p->origin) == 0)
        return h->conn;
    return 0;
}

/* ===================================================================== */
/* members: a join's start in the stream                                  */

/* Ends a member's recovery: releases the live messages held meanwhile
 * (those after its cursor) and lets live ones through directly again. */
static void release_member(pl_member_t *m)
{
    m->recovering = 0;
    pl_mqueue_t mq = m->q;
    memset(&m->q, 0, sizeof(m->q));
    for (size_t i = 0; i < mq.n; i++) {
        if (mq.v[i].seq <= m->cursor)
            continue;
        m->cursor = mq.v[i].seq;
        if (mq.v[i].origin_conn != m->conn_id) {
            pl_conn_send_frame(m->conn, mq.v[i].f);
            chat_count(chat_m_deliveries, 1);
        }
    }
    pl_mqueue_clear(&mq);
}

/* The join's recovery (since, upto] (refill.c, bounded): replays what
 * exists; past recover_max or the byte budget nothing, recovered:false
 * (the client pages back with history). */
static void on_recover(void *arg, const chat_refill_res_t *res)
{
    req_t *q = arg;
    session_t *s = q->s;
    proto_t *p = s->p;
    pl_member_t *m = s->c ? pl_room_member(&s->rooms, q->room) : NULL;
    if (m == NULL || !m->recovering) {
        chat_req_free(q);
        return;
    }
    if (res->status < 0) {
        m->recovering = 0;
        chat_leave_member(p, s, m);
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
        return;
    }
    int recovered = !res->over;
    int64_t expect = q->since + 1;
    for (int part = 0; part < 2; part++) {
        const pl_history_page_t *page = part == 0 ? res->older : res->recent;
        for (size_t i = 0; i < page->n; i++) {
            const pl_hmsg_t *h = &page->v[i];
            if (h->seq <= m->cursor || (q->upto >= 0 && h->seq > q->upto))
                continue;
            if (h->seq > expect)
                recovered = 0;
            pl_conn_send_text(s->c, h->json, h->len);
            chat_count(chat_m_deliveries, 1);
            m->cursor = h->seq;
            expect = h->seq + 1;
        }
    }
    int64_t seq = q->upto >= 0 ? q->upto : m->cursor;
    if (q->upto >= 0 && expect <= q->upto)
        recovered = 0; /* the newest ones are gone too */
    if (m->cursor < seq)
        m->cursor = seq;
    json_t *o = chat_ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "recovered", json_boolean(recovered));
    chat_send_json(s, o);
    /* then the live messages that arrived meanwhile */
    release_member(m);
    chat_req_free(q);
}

/* The room is READY: answer the join q (after recovery when since given). */
static void join_ready(proto_t *p, req_t *q)
{
    session_t *s = q->s;
    pl_room_t *r = pl_room_get(&p->rooms, q->room);
    pl_member_t *m = s->c ? pl_room_member(&s->rooms, q->room) : NULL;
    if (m == NULL || r == NULL) {
        chat_req_error(q, "not_joined", "left before the join completed");
        chat_req_free(q);
        return;
    }
    m->waiting = 0;
    /* head: the last seq this connection gets through the live path. For
     * dm rooms that path is the user's channel (dmstream), not the room's. */
    int64_t head = r->last_seq;
    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    if (pl_room_dm_users(q->room, a, b) > 0) {
        dmstream_t *d = chat_dm_stream(p, s->auth.user, q->room);
        if (d && d->last > head)
            head = d->last;
    }
    if (!q->has_since || q->since >= head) {
        m->cursor = head;
        json_t *o = chat_ok_obj(q->has_id, q->id);
        json_object_set_new(o, "room", json_string(q->room));
        json_object_set_new(o, "seq", json_integer(head));
        /* a since ahead of the room means its state was lost (Redis lost
         * its data); the room continues above the old seqs, but what the
         * client missed cannot be told: not recovered */
        if (q->has_since)
            json_object_set_new(o, "recovered", json_boolean(q->since == head));
        chat_send_json(s, o);
        release_member(m);
        chat_req_free(q);
        return;
    }
    m->recovering = 1;
    m->cursor = q->since;
    q->upto = head;
    if (chat_refill(p, q->room, q->since, q->upto, on_recover, q) < 0) {
        m->recovering = 0;
        chat_leave_member(p, s, m);
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
    }
}

/* Answers every join waiting on the room with an error. With unjoin the
 * waiting members are removed too (they never got their stream), which may
 * drop the room itself: callers must not touch r afterwards. */
static void fail_waiters(proto_t *p, pl_room_t *r, const char *code, const char *msg, int unjoin)
{
    req_t *q = r->waiters;
    r->waiters = NULL;
    while (q) {
        req_t *next = q->next;
        pl_member_t *m = unjoin && q->s->c ? pl_room_member(&q->s->rooms, q->room) : NULL;
        if (m)
            chat_leave_member(p, q->s, m);
        chat_req_error(q, code, msg);
        chat_req_free(q);
        q = next;
    }
}

/* ===================================================================== */
/* rooms: WAIT -> fetch -> READY                                          */

static void start_fetch(proto_t *p, pl_room_t *r);

/* Releases queued live messages in order. A gap at the front (a message
 * was published while we were not subscribed) starts a catch-up fetch,
 * unless the fetch that just ran could not fill it (trimmed), in which
 * case it is accepted. */
static void drain_pending(proto_t *p, pl_room_t *r, int accept_gap)
{
    size_t i = 0;
    pl_mqueue_t *q = &r->pending;
    for (; i < q->n; i++) {
        pl_qmsg_t *m = &q->v[i];
        if (m->seq <= r->last_seq) {
            room_regression(p, r, m->seq, m->f, m->origin_conn);
            continue;
        }
        if (m->seq > r->last_seq + 1) {
            if (!accept_gap)
                break;
            fanout_gap(r, r->last_seq + 1, m->seq - 1);
        }
        fanout_msg(r, m->seq, m->f, m->origin_conn);
        r->last_seq = m->seq;
        note(&r->seen, m->seq, m->f);
    }
    if (i < q->n || r->dropped) {
        /* keep the rest, fetch what is missing before them; or, when live
         * messages were dropped from the full queue after all those held,
         * fetch them now (else they would wait for the next live message) */
        pl_mqueue_shift(q, i);
        r->stream = ROOM_WAIT;
        start_fetch(p, r);
        return;
    }
    pl_mqueue_clear(q);
    r->stream = ROOM_READY;
    r->refill_done = 0;
    req_t *w = r->waiters;
    r->waiters = NULL;
    /* waiters were pushed at the front: answer in arrival order */
    req_t *rev = NULL;
    while (w) {
        req_t *next = w->next;
        w->next = rev;
        rev = w;
        w = next;
    }
    while (rev) {
        req_t *next = rev->next;
        rev->next = NULL;
        join_ready(p, rev);
        rev = next;
    }
}

typedef struct fetch {
    proto_t *p;
    char room[PL_ROOM_MAX + 1];
    uint64_t gen;
} fetch_t;

static pl_room_t *fetch_room(fetch_t *f)
{
    pl_room_t *r = pl_room_get(&f->p->rooms, f->room);
    if (r == NULL || r->gen != f->gen)
        return NULL;
    r->fetching = 0;
    return r;
}

/* A failed fetch leaves its room waiting: try again shortly (a restarted
 * Redis answers LOADING for a while; a lost link comes back). */
static void schedule_refetch(proto_t *p)
{
    if (p->refetch && !evtimer_pending(p->refetch, NULL)) {
        struct timeval tv = {0, 250 * 1000};
        evtimer_add(p->refetch, &tv);
    }
}

static void on_base(void *arg, redisReply *rep)
{
    fetch_t *f = arg;
    proto_t *p = f->p;
    pl_room_t *r = fetch_room(f);
    free(f);
    if (r == NULL)
        return;
    if (rep == NULL || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
        schedule_refetch(p);
        fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    r->have_base = 1;
    r->last_seq = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    r->base_lost = rep->type == REDIS_REPLY_NIL;
    drain_pending(p, r, 0);
}

/* Schedules the refetch timer soon: a chunked refill waits for its
 * members' output to drain (stream.c start_fetch checks on each tick). */
static void schedule_pace(proto_t *p)
{
    if (p->refetch) {
        struct timeval tv = {0, PACE_MS * 1000};
        evtimer_add(p->refetch, &tv);
    }
}

/* Whether every member's output queue is below a quarter of
 * send_buffer_limit: the next chunk of a refill may go out. */
static int members_drained(const proto_t *p, const pl_room_t *r)
{
    size_t low = (size_t)(p->w->cfg->send_buffer_limit / 4);
    for (const pl_member_t *m = r->members; m; m = m->rnext)
        if (((const pl_conn_t *)m->conn)->out_bytes >= low)
            return 0;
    return 1;
}

/* The start of the live messages held meanwhile above last_seq (or to+1):
 * a gap up to `to` ends below it. */
static int64_t gap_end(const pl_room_t *r, int64_t to)
{
    for (size_t i = 0; i < r->pending.n; i++)
        if (r->pending.v[i].seq > r->last_seq) {
            if (r->pending.v[i].seq <= to)
                to = r->pending.v[i].seq - 1;
            break;
        }
    return to;
}

/* The room's refill (refill.c), one chunk at a time: a gap event for what
 * cannot come, then the messages in seq order; while the range is not
 * covered the room keeps waiting and the next chunk is fetched once the
 * members' output drained (start_fetch); then the live ones held
 * meanwhile. Past refill_max messages the rest of the range is one gap. */
static void on_catchup(void *arg, const chat_refill_res_t *res)
{
    fetch_t *f = arg;
    proto_t *p = f->p;
    pl_room_t *r = fetch_room(f);
    free(f);
    if (r == NULL)
        return;
    if (res->status < 0) {
        r->refill_upto = 0; /* the next fetch starts over from the room's seq */
        schedule_refetch(p);
        fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    chat_refill_count(res);
    r->refill_done += (int64_t)(res->older->n + res->recent->n);
    if (res->gap_from > r->last_seq) {
        /* live messages held meanwhile may already cover the range's end
         * (published between the subscription and the seq read) */
        int64_t to = gap_end(r, res->gap_to);
        if (to >= res->gap_from) {
            fanout_gap(r, res->gap_from, to);
            r->last_seq = to;
        }
    }
    for (int part = 0; part < 2; part++) {
        const pl_history_page_t *page = part == 0 ? res->older : res->recent;
        for (size_t i = 0; i < page->n; i++) {
            const pl_hmsg_t *h = &page->v[i];
            if (h->seq <= r->last_seq)
                continue;
            if (h->seq > r->last_seq + 1)
                fanout_gap(r, r->last_seq + 1, h->seq - 1);
            pl_frame_t *fr = pl_frame_new(PL_WS_TEXT, h->json, h->len);
            fanout_msg(r, h->seq, fr, fetched_origin(p, h));
            note(&r->seen, h->seq, fr);
            pl_frame_unref(fr);
            r->last_seq = h->seq;
        }
    }
    if (r->last_seq < res->upto && gap_end(r, res->upto) > r->last_seq) {
        int64_t max = p->w->cfg->refill_max;
        if (max == 0 || r->refill_done < max) {
            /* more chunks: the room keeps waiting, start_fetch paces */
            r->refill_upto = res->upto;
            start_fetch(p, r);
            return;
        }
        chat_limit(chat_l_refill_max);
        pl_log_warn("refill past refill_max, the rest announced as a gap\troom=%s done=%" PRId64,
                    r->name, r->refill_done);
        fanout_gap(r, r->last_seq + 1, gap_end(r, res->upto));
        r->last_seq = gap_end(r, res->upto);
    }
    r->refill_upto = 0;
    /* the refill covered up to the seq read after subscribing: a gap still
     * at the front of pending is accepted (announced), unless pending
     * overflowed meanwhile (those messages exist: fetch again) */
    drain_pending(p, r, !r->dropped); /* refetches while r->dropped */
}

/* Gets the room READY: the base seq on first use, else every message
 * after last_seq. Needs a confirmed subscription (messages published
 * after the fetch must reach us live). */
static void start_fetch(proto_t *p, pl_room_t *r)
{
    r->stream = ROOM_WAIT;
    if (r->fetching || !r->subscribed)
        return;
    if (r->refill_upto > r->last_seq && !members_drained(p, r)) {
        /* the next chunk when the output drained; a member that reads
         * nothing for PACE_WAIT_MS holds the room no longer (it then
         * meets send_buffer_limit like any slow client) */
        uint64_t now = pl_mono_ms();
        if (r->pace_ms == 0)
            r->pace_ms = now;
        if (now - r->pace_ms < PACE_WAIT_MS) {
            schedule_pace(p);
            return;
        }
    }
    r->pace_ms = 0;
    fetch_t *f = pl_xcalloc(1, sizeof(*f));
    f->p = p;
    snprintf(f->room, sizeof(f->room), "%s", r->name);
    f->gen = r->gen;
    int rc;
    if (!r->have_base) {
        char key[PL_KEY_MAX];
        pl_key_seq(key, r->name);
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        rc = pl_bus_command(p->bus, on_base, f, 2, argv, lens);
    } else if (r->refill_upto > r->last_seq) {
        /* the next chunk (r->dropped stays: those are above refill_upto) */
        rc = chat_refill_chunk(p, r->name, r->last_seq, r->refill_upto, on_catchup, f);
    } else if (r->base_lost) {
        /* no seq key at the base read (a new room, or Redis lost its
         * state and the room continues above MariaDB's seqs): the old
         * messages below are not this stream's to replay in bulk; one
         * bounded refill as before (past recover_max: a gap) */
        r->dropped = 0;
        r->refill_upto = 0;
        r->base_lost = 0;
        rc = chat_refill(p, r->name, r->last_seq, -1, on_catchup, f);
    } else {
        r->dropped = 0;
        r->refill_upto = 0;
        rc = chat_refill_chunk(p, r->name, r->last_seq, -1, on_catchup, f);
    }
    if (rc < 0) {
        free(f);
        r->refill_upto = 0;
        schedule_refetch(p);
        fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    r->fetching = 1;
}

void chat_stream_join(proto_t *p, pl_member_t *m, req_t *q, int first_conn)
{
    pl_room_t *r = m->room;
    if (r->gen == 0)
        r->gen = ++p->room_gen;
    /* until the join is answered, live messages wait on the member: the
     * reply's seq (or the recovery) decides where its stream starts */
    m->recovering = 1;
    if (first_conn) {
        char ch[PL_KEY_MAX];
        pl_key_room_channel(ch, r->name);
        pl_bus_subscribe(p->bus, ch);
        if (pl_bus_subscribed(p->bus, ch))
            r->subscribed = 1;
    }
    if (r->stream == ROOM_READY) {
        join_ready(p, q);
        return;
    }
    m->waiting = 1;
    q->next = r->waiters;
    r->waiters = q;
    if (r->subscribed && !r->fetching)
        start_fetch(p, r);
}

void chat_stream_close(proto_t *p, pl_room_t *r)
{
    char ch[PL_KEY_MAX];
    pl_key_room_channel(ch, r->name);
    pl_bus_unsubscribe(p->bus, ch);
    fail_waiters(p, r, "not_joined", "left before the join completed", 0);
    pl_room_drop(&p->rooms, r);
}

/* Holds a live message while the room waits. Past stream_queue_max or
 * send_buffer_limit it is dropped: it is stored, so the refill after the
 * fetch reads it instead (r->dropped: that gap is refetched, never
 * accepted). */
static void room_hold(proto_t *p, pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    const pl_gw_config_t *cfg = p->w->cfg;
    if (pl_mqueue_full(&r->pending, (size_t)cfg->stream_queue_max,
                       (size_t)cfg->send_buffer_limit)) {
        if (!r->dropped)
            pl_log_warn("room queue full, live messages left to the refill\troom=%s seq=%" PRId64,
                        r->name, seq);
        chat_limit(chat_l_stream_queue);
        r->dropped = 1;
        return;
    }
    pl_mqueue_push(&r->pending, seq, origin, f);
}

void chat_stream_msg(proto_t *p, pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    if (r->stream != ROOM_READY) {
        room_hold(p, r, seq, f, origin);
        return;
    }
    if (seq <= r->last_seq) {
        /* normally already delivered (catch-up overlap); else a regression */
        room_regression(p, r, seq, f, origin);
        return;
    }
    if (seq > r->last_seq + 1) {
        room_hold(p, r, seq, f, origin);
        start_fetch(p, r);
        return;
    }
    fanout_msg(r, seq, f, origin);
    r->last_seq = seq;
    r->base_lost = 0; /* the stream continues from its base: later refills are chunked */
    note(&r->seen, seq, f);
}

void chat_stream_subscribed(proto_t *p, const char *room)
{
    pl_room_t *r = pl_room_get(&p->rooms, room);
    if (r == NULL)
        return;
    r->subscribed = 1;
    start_fetch(p, r);
}

void chat_stream_sub_down(proto_t *p)
{
    size_t i, n = 0;
    char **waiting = pl_xcalloc(p->rooms.rooms.n + 1, sizeof(*waiting));
    for (pl_map_entry_t *e = pl_map_first(&p->rooms.rooms, &i); e;
         e = pl_map_next(&p->rooms.rooms, e, &i)) {
        pl_room_t *r = e->val;
        r->subscribed = 0;
        r->stream = ROOM_WAIT;
        if (r->waiters)
            waiting[n++] = pl_xstrdup(r->name);
    }
    /* joins waiting for a subscription would wait for the reconnect:
     * refuse them now (may drop rooms, hence the second pass) */
    for (size_t k = 0; k < n; k++) {
        pl_room_t *r = pl_room_get(&p->rooms, waiting[k]);
        if (r)
            fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        free(waiting[k]);
    }
    free(waiting);
}

void chat_stream_refetch(proto_t *p)
{
    /* start_fetch may drop a room (failed joins): collect names first */
    size_t i, n = 0;
    char **names = pl_xcalloc(p->rooms.rooms.n + 1, sizeof(*names));
    for (pl_map_entry_t *e = pl_map_first(&p->rooms.rooms, &i); e;
         e = pl_map_next(&p->rooms.rooms, e, &i)) {
        pl_room_t *r = e->val;
        if (r->subscribed && r->stream == ROOM_WAIT && !r->fetching)
            names[n++] = pl_xstrdup(r->name);
    }
    for (size_t k = 0; k < n; k++) {
        pl_room_t *r = pl_room_get(&p->rooms, names[k]);
        if (r && r->subscribed && r->stream == ROOM_WAIT && !r->fetching)
            start_fetch(p, r);
        free(names[k]);
    }
    free(names);
}

void chat_on_refetch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_stream_refetch(arg);
}

/* ===================================================================== */
/* DM streams                                                             */

/* Per local user and dm room, the same in-order, once-only stream as
 * rooms, fed by the user's channel. A gap (a DM published while the user
 * channel was resubscribing) is filled from the dm room's recent zset
 * before newer DMs are released.
 *
 * Indexed per user (p->dms: user -> dmuser_t -> dm room -> dmstream_t),
 * so a user's disconnect or resubscribe touches only that user's streams.
 * A user holds at most DM_STREAMS_PER_USER of them (the least recently
 * used goes first) and one idle for DM_IDLE_MS is dropped by the sweep:
 * DMs to ten thousand made-up users leave a bounded trace. A dropped
 * stream only forgets its position: the next DM of that room starts a new
 * one (no gap check against the old position, which is why only idle or
 * least recently used ones go). */

#define DM_STREAMS_PER_USER 256
#define DM_IDLE_MS (5 * 60 * 1000)

typedef struct dmuser {
    pl_map_t streams;                /* dm room -> dmstream_t */
    dmstream_t *lru_head, *lru_tail; /* most recently used first */
} dmuser_t;

typedef struct dmfetch {
    proto_t *p;
    char user[PL_USER_MAX + 1];
    char room[PL_ROOM_MAX + 1];
} dmfetch_t;

/* Tells the user's connections that from..to of a dm room will not come. */
static void dm_gap(proto_t *p, dmstream_t *d, int64_t from, int64_t to)
{
    pl_log_warn("dms lost to this worker, gap announced\tuser=%s room=%s from=%" PRId64
                " to=%" PRId64,
                d->user, d->room, from, to);
    pl_frame_t *f = chat_gap_frame(d->room, from, to);
    const pl_user_conns_t *u = pl_user_get(&p->rooms, d->user);
    chat_count(chat_m_gap_events, u ? (int64_t)u->n : 0);
    chat_user_fanout(p, d->user, f, 0, 0);
    pl_frame_unref(f);
    if (to > d->last)
        d->last = to;
}

static void dm_deliver(proto_t *p, dmstream_t *d, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    if (seq <= d->last) {
        /* normally already delivered; a new DM under a used seq goes out
         * too, and the dm room's seq is raised back */
        if (regression(&d->seen, "dm", d->room, seq, d->last, f)) {
            chat_user_fanout(p, d->user, f, origin, 1);
            chat_guard_raise(p, d->room, d->last);
        }
        return;
    }
    if (d->last > 0 && seq > d->last + 1)
        dm_gap(p, d, d->last + 1, seq - 1);
    d->last = seq;
    note(&d->seen, seq, f);
    chat_user_fanout(p, d->user, f, origin, 1);
}

/* Releases the DMs held while fetching, in order. */
static void dm_release(proto_t *p, dmstream_t *d)
{
    pl_mqueue_t q = d->pending;
    memset(&d->pending, 0, sizeof(d->pending));
    for (size_t i = 0; i < q.n; i++)
        dm_deliver(p, d, q.v[i].seq, q.v[i].f, q.v[i].origin_conn);
    pl_mqueue_clear(&q);
}

static void lru_unlink(dmuser_t *du, dmstream_t *d)
{
    if (d->lprev)
        d->lprev->lnext = d->lnext;
    else
        du->lru_head = d->lnext;
    if (d->lnext)
        d->lnext->lprev = d->lprev;
    else
        du->lru_tail = d->lprev;
    d->lprev = d->lnext = NULL;
}

static void lru_touch(dmuser_t *du, dmstream_t *d)
{
    d->used_ms = pl_mono_ms();
    if (du->lru_head == d)
        return;
    if (d->lprev || d->lnext || du->lru_tail == d)
        lru_unlink(du, d);
    d->lnext = du->lru_head;
    if (du->lru_head)
        du->lru_head->lprev = d;
    du->lru_head = d;
    if (du->lru_tail == NULL)
        du->lru_tail = d;
}

/* Frees a stream (a fetch in flight finds none). With release, what it
 * holds is delivered first (eviction), else dropped (the user is gone). */
static void dm_drop(proto_t *p, dmuser_t *du, dmstream_t *d, int release)
{
    if (release)
        dm_release(p, d);
    lru_unlink(du, d);
    pl_map_del(&du->streams, d->room);
    pl_mqueue_clear(&d->pending);
    free(d);
    chat_count(chat_m_dm_streams, -1);
}

static void dmuser_free(proto_t *p, dmuser_t *du)
{
    while (du->lru_head)
        dm_drop(p, du, du->lru_head, 0);
    pl_map_clear(&du->streams);
    free(du);
}

static dmstream_t *dm_find(proto_t *p, const char *user, const char *room, dmuser_t **dup)
{
    dmuser_t *du = pl_map_get(&p->dms, user);
    if (dup)
        *dup = du;
    return du ? pl_map_get(&du->streams, room) : NULL;
}

static int dm_fetch(proto_t *p, dmstream_t *d);

static void on_dm_fetch(void *arg, const chat_refill_res_t *res)
{
    dmfetch_t *df = arg;
    proto_t *p = df->p;
    dmstream_t *d = dm_find(p, df->user, df->room, NULL);
    free(df);
    if (d == NULL)
        return; /* the user left this worker meanwhile, or the stream was dropped */
    d->fetching = 0;
    if (res->status == 0)
        chat_refill_count(res);
    if (res->status == 0 && res->gap_from > d->last) {
        int64_t to = res->gap_to; /* DMs held meanwhile may cover its end */
        if (d->pending.n > 0 && d->pending.v[0].seq > d->last && d->pending.v[0].seq <= to)
            to = d->pending.v[0].seq - 1;
        if (to >= res->gap_from)
            dm_gap(p, d, res->gap_from, to);
    }
    for (int part = 0; res->status == 0 && part < 2; part++) {
        const pl_history_page_t *page = part == 0 ? res->older : res->recent;
        for (size_t i = 0; i < page->n; i++) {
            pl_frame_t *f = pl_frame_new(PL_WS_TEXT, page->v[i].json, page->v[i].len);
            dm_deliver(p, d, page->v[i].seq, f, fetched_origin(p, &page->v[i]));
            pl_frame_unref(f);
        }
    }
    /* DMs dropped from a full queue exist: fetch again before releasing */
    if (res->status == 0 && d->dropped) {
        d->dropped = 0;
        if (dm_fetch(p, d) == 0)
            return;
    }
    dm_release(p, d);
}

/* Starts a catch-up from d->last; returns -1 when Redis is down. */
static int dm_fetch(proto_t *p, dmstream_t *d)
{
    if (d->fetching)
        return 0;
    dmfetch_t *df = pl_xcalloc(1, sizeof(*df));
    df->p = p;
    snprintf(df->user, sizeof(df->user), "%s", d->user);
    snprintf(df->room, sizeof(df->room), "%s", d->room);
    if (chat_refill(p, d->room, d->last, -1, on_dm_fetch, df) < 0) {
        free(df);
        return -1;
    }
    d->fetching = 1;
    return 0;
}

/* The user's stream for a dm room, created while the user has a local
 * connection; NULL otherwise. Marks it used. */
static dmstream_t *dm_stream_n(proto_t *p, const char *user, const char *room, size_t room_len)
{
    char name[PL_ROOM_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)room_len, room);
    dmuser_t *du;
    dmstream_t *d = dm_find(p, user, name, &du);
    if (d == NULL) {
        if (pl_user_get(&p->rooms, user) == NULL)
            return NULL; /* nobody of this user here any more */
        if (du == NULL) {
            du = pl_xcalloc(1, sizeof(*du));
            pl_map_init(&du->streams);
            pl_map_put(&p->dms, user, du);
        }
        if (du->streams.n >= DM_STREAMS_PER_USER)
            dm_drop(p, du, du->lru_tail, 1);
        d = pl_xcalloc(1, sizeof(*d));
        snprintf(d->user, sizeof(d->user), "%.64s", user);
        snprintf(d->room, sizeof(d->room), "%s", name);
        pl_map_put(&du->streams, d->room, d);
        chat_count(chat_m_dm_streams, 1);
    }
    lru_touch(du, d);
    return d;
}

dmstream_t *chat_dm_stream(proto_t *p, const char *user, const char *room)
{
    return dm_stream_n(p, user, room, strlen(room));
}

void chat_stream_dm(proto_t *p, const char *user, const char *room, size_t room_len, int64_t seq,
                    pl_frame_t *f, uint64_t origin)
{
    /* a joined dm room's position advances with its user-channel traffic
     * (join replies report it) */
    char name[PL_ROOM_MAX + 1];
    assert(room_len <= PL_ROOM_MAX);
    memcpy(name, room, room_len);
    name[room_len] = '\0';
    pl_room_t *r = pl_room_get(&p->rooms, name);
    if (r && r->have_base && seq > r->last_seq)
        r->last_seq = seq;
    dmstream_t *d = dm_stream_n(p, user, room, room_len);
    if (d == NULL)
        return;
    if (d->fetching || (d->last > 0 && seq > d->last + 1)) {
        const pl_gw_config_t *cfg = p->w->cfg;
        if (pl_mqueue_full(&d->pending, (size_t)cfg->stream_queue_max,
                           (size_t)cfg->send_buffer_limit)) {
            chat_limit(chat_l_stream_queue);
            d->dropped = 1; /* stored: the next fetch reads it */
        } else {
            pl_mqueue_push(&d->pending, seq, origin, f);
        }
        if (dm_fetch(p, d) < 0)
            dm_release(p, d); /* Redis down: deliver what we have, gap and all */
        return;
    }
    dm_deliver(p, d, seq, f, origin);
}

void chat_stream_user_subscribed(proto_t *p, const char *user)
{
    dmuser_t *du = pl_map_get(&p->dms, user);
    if (du == NULL)
        return;
    /* dm_fetch neither adds nor removes streams: iterate in place */
    for (dmstream_t *d = du->lru_head; d; d = d->lnext)
        if (d->last > 0)
            (void)dm_fetch(p, d);
}

void chat_dm_forget(proto_t *p, const char *user)
{
    dmuser_t *du = pl_map_del(&p->dms, user);
    if (du)
        dmuser_free(p, du);
}

void chat_dm_sweep(proto_t *p)
{
    uint64_t now = pl_mono_ms();
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->dms, &i); e; e = pl_map_next(&p->dms, e, &i)) {
        dmuser_t *du = e->val;
        while (du->lru_tail && !du->lru_tail->fetching && now - du->lru_tail->used_ms >= DM_IDLE_MS)
            dm_drop(p, du, du->lru_tail, 1);
    }
}

void chat_dm_each(proto_t *p, void (*fn)(proto_t *p, dmstream_t *d, void *arg), void *arg)
{
    size_t i, j;
    for (pl_map_entry_t *e = pl_map_first(&p->dms, &i); e; e = pl_map_next(&p->dms, e, &i)) {
        dmuser_t *du = e->val;
        for (pl_map_entry_t *s = pl_map_first(&du->streams, &j); s;
             s = pl_map_next(&du->streams, s, &j))
            fn(p, s->val, arg);
    }
}

void chat_dm_free_all(proto_t *p)
{
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->dms, &i); e; e = pl_map_next(&p->dms, e, &i))
        dmuser_free(p, e->val);
    pl_map_clear(&p->dms);
}
