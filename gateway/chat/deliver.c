/*
 * Chat delivery (docs/protocol.md 2): from the worker's Redis channels to
 * local members, each room (and each local user's dm room) handed out in
 * seq order, each seq once; gaps, resubscriptions and first joins fetch
 * the missing messages from the recent zset first. Also the bus callbacks
 * (message, subscribed, link down/up).
 *
 * Delivery invariant: on this worker each room is a stream handed to its
 * members strictly in seq order, each seq once (room->last_seq). Live
 * messages arrive on the room channel; while the room is not READY
 * (subscription being confirmed, base seq or missed messages being
 * fetched after a join, a reconnect or a gap) they queue on the room and
 * are released after the fetch. A member joining with `since` is first
 * served from the recent zset up to the room's last_seq at that moment
 * while live messages queue on the member, so it sees neither a gap nor a
 * duplicate.
 */
#include "envelope.h"
#include "script.h"
#include "ws.h"
#include "chat.h"
#include "history.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* delivery                                                               */

void chat_room_channel(char *buf, const char *room)
{
    pl_key_room(buf, room, "ch");
}

/* Hands one message of the room stream to every local member except the
 * origin connection. The frame is shared: one reference per queue. */
static void fanout_msg(pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    pl_member_t *next;
    for (pl_member_t *m = r->members; m; m = next) {
        next = m->rnext;
        if (m->recovering) {
            pl_mqueue_push(&m->q, seq, origin, f);
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

/* Presence and typing: not part of the seq stream. */
static void fanout_event(pl_room_t *r, pl_frame_t *f, uint64_t origin)
{
    pl_member_t *next;
    for (pl_member_t *m = r->members; m; m = next) {
        next = m->rnext;
        if (m->conn_id != origin)
            pl_conn_send_frame(m->conn, f);
    }
}

/* Answers every join waiting on the room with an error. With unjoin the
 * waiting members are removed too (they never got their stream), which may
 * drop the room itself: callers must not touch r afterwards. */
void chat_fail_waiters(proto_t *p, pl_room_t *r, const char *code, const char *msg, int unjoin)
{
    req_t *q = r->waiters;
    r->waiters = NULL;
    while (q) {
        req_t *next = q->next;
        pl_member_t *m = unjoin && q->s->c ? pl_room_member(q->s->rooms, q->room) : NULL;
        if (m)
            chat_leave_member(p, q->s, m);
        chat_req_error(q, code, msg);
        chat_req_free(q);
        q = next;
    }
}

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
        if (m->seq <= r->last_seq)
            continue;
        if (m->seq > r->last_seq + 1) {
            if (!accept_gap)
                break;
            pl_log_warn("messages lost to this worker (trimmed)\troom=%s from=%" PRId64
                        " to=%" PRId64,
                        r->name, r->last_seq + 1, m->seq - 1);
        }
        fanout_msg(r, m->seq, m->f, m->origin_conn);
        r->last_seq = m->seq;
    }
    if (i < q->n) {
        /* keep the rest, fetch what is missing before them */
        for (size_t k = 0; k < i; k++)
            pl_frame_unref(q->v[k].f);
        memmove(q->v, q->v + i, (q->n - i) * sizeof(*q->v));
        q->n -= i;
        r->stream = ROOM_WAIT;
        chat_start_fetch(p, r);
        return;
    }
    pl_mqueue_clear(q);
    r->stream = ROOM_READY;
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
        chat_join_ready(p, rev);
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
        chat_fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    r->have_base = 1;
    r->last_seq = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    drain_pending(p, r, 0);
}

/* The local connection a fetched message came from (0: another worker or
 * node, or unknown), for the same sender exclusion as live delivery. */
static uint64_t fetched_origin(proto_t *p, const pl_hmsg_t *h)
{
    if (h->node && h->worker == p->w->index && strcmp(h->node, p->origin) == 0)
        return h->conn;
    return 0;
}

static void on_catchup(void *arg, int status, pl_history_page_t *page)
{
    fetch_t *f = arg;
    proto_t *p = f->p;
    pl_room_t *r = fetch_room(f);
    free(f);
    if (r == NULL)
        return;
    if (status < 0) {
        schedule_refetch(p);
        chat_fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    for (size_t i = 0; i < page->n; i++) {
        pl_hmsg_t *h = &page->v[i];
        if (h->seq <= r->last_seq)
            continue;
        if (h->seq > r->last_seq + 1)
            pl_log_warn("messages lost to this worker (trimmed)\troom=%s from=%" PRId64
                        " to=%" PRId64,
                        r->name, r->last_seq + 1, h->seq - 1);
        pl_frame_t *fr = pl_frame_new(PL_WS_TEXT, h->json, h->len);
        fanout_msg(r, h->seq, fr, fetched_origin(p, h));
        pl_frame_unref(fr);
        r->last_seq = h->seq;
    }
    drain_pending(p, r, 1);
}

/* Gets the room READY: the base seq on first use, else every message
 * after last_seq. Needs a confirmed subscription (messages published
 * after the fetch must reach us live). */
void chat_start_fetch(proto_t *p, pl_room_t *r)
{
    r->stream = ROOM_WAIT;
    if (r->fetching || !r->subscribed)
        return;
    fetch_t *f = pl_xcalloc(1, sizeof(*f));
    f->p = p;
    snprintf(f->room, sizeof(f->room), "%s", r->name);
    f->gen = r->gen;
    int rc;
    if (!r->have_base) {
        char key[PL_KEY_MAX];
        pl_key_room(key, r->name, "seq");
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        rc = pl_bus_command(p->bus, on_base, f, 2, argv, lens);
    } else {
        rc = pl_history_range(p->bus, r->name, r->last_seq, -1, on_catchup, f);
    }
    if (rc < 0) {
        free(f);
        schedule_refetch(p);
        chat_fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        return;
    }
    r->fetching = 1;
}

static void live_msg(proto_t *p, pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    if (r->stream != ROOM_READY) {
        pl_mqueue_push(&r->pending, seq, origin, f);
        return;
    }
    if (seq <= r->last_seq)
        return; /* already delivered (catch-up overlap or a duplicate publish) */
    if (seq > r->last_seq + 1) {
        pl_mqueue_push(&r->pending, seq, origin, f);
        chat_start_fetch(p, r);
        return;
    }
    fanout_msg(r, seq, f, origin);
    r->last_seq = seq;
}

/* Channel names: "parley:{<room>}:ch" and "parley:user:{<user>}". Copies
 * the part between prefix and suffix (1..max bytes) into out. */
static int channel_part(const char *ch, size_t n, const char *prefix, const char *suffix,
                        size_t max, char *out)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (n < pl + sl + 1 || strncmp(ch, prefix, pl) != 0 || memcmp(ch + n - sl, suffix, sl) != 0)
        return -1;
    size_t len = n - pl - sl;
    if (len > max)
        return -1;
    memcpy(out, ch + pl, len);
    out[len] = '\0';
    return 0;
}

static int channel_room(const char *ch, size_t n, char *room)
{
    return channel_part(ch, n, "parley:{", "}:ch", PL_ROOM_MAX, room);
}

static int channel_user(const char *ch, size_t n, char *user)
{
    return channel_part(ch, n, "parley:user:{", "}", PL_USER_MAX, user);
}

/* ---- DMs: per local user and dm room, the same in-order, once-only
 * stream as rooms, fed by the user's channel. A gap (a DM published while
 * the user channel was resubscribing) is filled from the dm room's recent
 * zset before newer DMs are released. */

typedef struct dmfetch {
    proto_t *p;
    char key[PL_USER_MAX + PL_ROOM_MAX + 2];
} dmfetch_t;

/* Queues f on every local connection of user except origin. */
static void deliver_user(proto_t *p, const char *user, pl_frame_t *f, uint64_t origin, int is_msg)
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

static void dm_deliver(proto_t *p, dmstream_t *d, int64_t seq, pl_frame_t *f, uint64_t origin)
{
    if (seq <= d->last)
        return;
    if (d->last > 0 && seq > d->last + 1)
        pl_log_warn("dms lost to this worker\tuser=%s room=%s from=%" PRId64 " to=%" PRId64,
                    d->user, d->room, d->last + 1, seq - 1);
    d->last = seq;
    deliver_user(p, d->user, f, origin, 1);
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

static void on_dm_fetch(void *arg, int status, pl_history_page_t *page)
{
    dmfetch_t *df = arg;
    proto_t *p = df->p;
    dmstream_t *d = pl_map_get(&p->dms, df->key);
    free(df);
    if (d == NULL)
        return; /* the user left this worker meanwhile */
    d->fetching = 0;
    for (size_t i = 0; status == 0 && i < page->n; i++) {
        pl_frame_t *f = pl_frame_new(PL_WS_TEXT, page->v[i].json, page->v[i].len);
        dm_deliver(p, d, page->v[i].seq, f, fetched_origin(p, &page->v[i]));
        pl_frame_unref(f);
    }
    dm_release(p, d);
}

/* Starts a catch-up from d->last; returns -1 when Redis is down. */
static int dm_fetch(proto_t *p, dmstream_t *d, const char *key)
{
    if (d->fetching)
        return 0;
    dmfetch_t *df = pl_xcalloc(1, sizeof(*df));
    df->p = p;
    snprintf(df->key, sizeof(df->key), "%s", key);
    if (pl_history_range(p->bus, d->room, d->last, -1, on_dm_fetch, df) < 0) {
        free(df);
        return -1;
    }
    d->fetching = 1;
    return 0;
}

/* The user's stream for a dm room, created while the user has a local
 * connection; NULL otherwise. */
static dmstream_t *dm_stream_n(proto_t *p, const char *user, const char *room, size_t room_len,
                               char *key, size_t keylen)
{
    snprintf(key, keylen, "%.64s|%.*s", user, (int)room_len, room);
    dmstream_t *d = pl_map_get(&p->dms, key);
    if (d == NULL) {
        if (pl_user_get(&p->rooms, user) == NULL)
            return NULL; /* nobody of this user here any more */
        d = pl_xcalloc(1, sizeof(*d));
        snprintf(d->user, sizeof(d->user), "%.64s", user);
        snprintf(d->room, sizeof(d->room), "%.*s", (int)room_len, room);
        pl_map_put(&p->dms, key, d);
    }
    return d;
}

dmstream_t *chat_dm_stream(proto_t *p, const char *user, const char *room)
{
    char key[PL_USER_MAX + PL_ROOM_MAX + 2];
    return dm_stream_n(p, user, room, strlen(room), key, sizeof(key));
}

static void dm_live(proto_t *p, const char *user, const char *room, size_t room_len, int64_t seq,
                    pl_frame_t *f, uint64_t origin)
{
    char key[PL_USER_MAX + PL_ROOM_MAX + 2];
    dmstream_t *d = dm_stream_n(p, user, room, room_len, key, sizeof(key));
    if (d == NULL)
        return;
    if (d->fetching || (d->last > 0 && seq > d->last + 1)) {
        pl_mqueue_push(&d->pending, seq, origin, f);
        if (dm_fetch(p, d, key) < 0)
            dm_release(p, d); /* Redis down: deliver what we have, gap and all */
        return;
    }
    dm_deliver(p, d, seq, f, origin);
}

/* Keys of the user's DM streams (malloc'd array of malloc'd keys). */
static char **dm_keys(proto_t *p, const char *user, size_t *n)
{
    size_t i, ulen = strlen(user);
    char **keys = pl_xcalloc(p->dms.n + 1, sizeof(*keys));
    *n = 0;
    for (pl_map_entry_t *e = pl_map_first(&p->dms, &i); e; e = pl_map_next(&p->dms, e, &i))
        if (strncmp(e->key, user, ulen) == 0 && e->key[ulen] == '|')
            keys[(*n)++] = pl_xstrdup(e->key);
    return keys;
}

/* The user channel is (re)subscribed: fetch DMs published meanwhile. */
static void dm_resubscribed(proto_t *p, const char *user)
{
    size_t n;
    char **keys = dm_keys(p, user, &n);
    for (size_t k = 0; k < n; k++) {
        dmstream_t *d = pl_map_get(&p->dms, keys[k]);
        if (d && d->last > 0)
            (void)dm_fetch(p, d, keys[k]);
        free(keys[k]);
    }
    free(keys);
}

/* The user's last local connection went: forget its DM streams. */
void chat_dm_forget(proto_t *p, const char *user)
{
    size_t n;
    char **keys = dm_keys(p, user, &n);
    for (size_t k = 0; k < n; k++) {
        dmstream_t *d = pl_map_del(&p->dms, keys[k]);
        if (d) {
            pl_mqueue_clear(&d->pending); /* a fetch in flight finds no stream */
            free(d);
        }
        free(keys[k]);
    }
    free(keys);
}

void chat_on_bus_message(void *arg, const char *channel, size_t chlen, const char *payload,
                         size_t len)
{
    proto_t *p = arg;
    pl_envelope_t e;
    if (pl_envelope_parse(payload, len, &e) < 0) {
        pl_log_warn("malformed envelope dropped\tchannel=%.*s bytes=%zu", (int)chlen, channel, len);
        return;
    }
    uint64_t origin = 0;
    if (e.worker == p->w->index && e.node_len == strlen(p->origin) &&
        memcmp(e.node, p->origin, e.node_len) == 0)
        origin = e.conn;

    char name[PL_ROOM_MAX + 1];
    if (channel_user(channel, chlen, name) == 0) {
        if (e.kind == PL_ENV_MSG && e.room_len <= PL_ROOM_MAX) {
            /* a joined dm room's position advances with its user-channel
             * traffic (join replies report it) */
            char room[PL_ROOM_MAX + 1];
            memcpy(room, e.room, e.room_len);
            room[e.room_len] = '\0';
            pl_room_t *r = pl_room_get(&p->rooms, room);
            if (r && r->have_base && e.seq > r->last_seq)
                r->last_seq = e.seq;
        }
        pl_frame_t *f = pl_frame_new(PL_WS_TEXT, e.json, e.json_len);
        if (e.kind == PL_ENV_MSG && e.room_len <= PL_ROOM_MAX)
            dm_live(p, name, e.room, e.room_len, e.seq, f, origin);
        else
            deliver_user(p, name, f, origin, 0);
        pl_frame_unref(f);
        return;
    }
    if (channel_room(channel, chlen, name) < 0)
        return;
    pl_room_t *r = pl_room_get(&p->rooms, name);
    if (r == NULL || r->nmembers == 0)
        return;
    pl_frame_t *f = pl_frame_new(PL_WS_TEXT, e.json, e.json_len);
    if (e.kind == PL_ENV_MSG)
        live_msg(p, r, e.seq, f, origin);
    else
        fanout_event(r, f, origin);
    pl_frame_unref(f);
}

void chat_on_bus_subscribed(void *arg, const char *channel)
{
    proto_t *p = arg;
    char room[PL_ROOM_MAX + 1];
    if (channel_user(channel, strlen(channel), room) == 0) {
        const pl_user_conns_t *u = pl_user_get(&p->rooms, room);
        for (size_t i = 0; u && i < u->n; i++) {
            session_t *s = ((pl_conn_t *)u->conns[i])->session;
            if (s && s->auth_wait)
                chat_auth_reply(s);
        }
        dm_resubscribed(p, room);
        return;
    }
    if (channel_room(channel, strlen(channel), room) < 0)
        return;
    pl_room_t *r = pl_room_get(&p->rooms, room);
    if (r == NULL)
        return;
    r->subscribed = 1;
    chat_start_fetch(p, r);
}

void chat_on_bus_sub_down(void *arg)
{
    proto_t *p = arg;
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
            chat_fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        free(waiting[k]);
    }
    free(waiting);
}

static void refetch_rooms(proto_t *p)
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
            chat_start_fetch(p, r);
        free(names[k]);
    }
    free(names);
}

void chat_on_refetch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refetch_rooms(arg);
}

void chat_on_bus_cmd_up(void *arg)
{
    proto_t *p = arg;
    pl_script_load_all(p->bus); /* ahead of every script call on this link */
    chat_on_beat(-1, 0, p);     /* a restarted Redis may have lost presence: refresh now */
    refetch_rooms(p);
}
