/*
 * Chat protocol v1 (docs/protocol.md): per-connection sessions, one
 * handler per op, and the worker's delivery path from Redis channels to
 * local members.
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
#include "cmd.h"
#include "auth.h"
#include "bus.h"
#include "conn.h"
#include "db.h"
#include "envelope.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "ratelimit.h"
#include "room.h"
#include "script.h"
#include "token.h"
#include "util.h"
#include "worker.h"
#include "ws.h"

#include <assert.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRESENCE_BEAT_MS 15000   /* each worker refreshes its members this often */
#define PRESENCE_WINDOW_MS 45000 /* a member not refreshed for this long is gone */
#define PRESENCE_KEY_TTL_MS 120000
#define PL_MEMBER_MAX (PL_USER_MAX + 160 + 16) /* "user|origin|worker" */

/* ===================================================================== */
/* parsing (pure, see cmd.h)                                              */

static const char *const op_names[] = {"auth", "join",    "leave",    "send",
                                       "dm",   "history", "presence", "typing"};

static int fail(pl_cmd_t *cmd, const char *err, const char *msg)
{
    cmd->err = err;
    cmd->msg = msg;
    return -1;
}

static int get_room(pl_cmd_t *cmd, json_t *o)
{
    json_t *r = json_object_get(o, "room");
    if (!json_is_string(r))
        return fail(cmd, "bad_request", "room must be a string");
    if (!pl_room_name_valid(json_string_value(r)) ||
        strlen(json_string_value(r)) != json_string_length(r))
        return fail(cmd, "bad_request", "room must be 1-128 of [A-Za-z0-9_.:-]");
    cmd->room = json_string_value(r);
    return 0;
}

static int get_text(pl_cmd_t *cmd, json_t *o, size_t max_text)
{
    json_t *t = json_object_get(o, "text");
    if (!json_is_string(t))
        return fail(cmd, "bad_request", "text must be a string");
    cmd->text = json_string_value(t);
    cmd->text_len = json_string_length(t);
    if (cmd->text_len == 0)
        return fail(cmd, "bad_request", "text must not be empty");
    if (cmd->text_len > max_text)
        return fail(cmd, "too_large", "text exceeds max_text_size");
    json_t *cid = json_object_get(o, "cid");
    if (cid != NULL && !json_is_null(cid)) {
        if (!json_is_string(cid) || json_string_length(cid) < 1 ||
            json_string_length(cid) > PL_CID_MAX ||
            strlen(json_string_value(cid)) != json_string_length(cid))
            return fail(cmd, "bad_request", "cid must be a string of 1-64 bytes");
        cmd->cid = json_string_value(cid);
    }
    return 0;
}

int pl_cmd_parse(const char *text, size_t len, size_t max_text, pl_cmd_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    json_error_t jerr;
    /* \u0000 is valid JSON and allowed in text (kept with its length);
     * names and ids are checked for embedded NULs where they are read */
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    cmd->root = o;
    if (o == NULL)
        return fail(cmd, "bad_request", "malformed JSON");
    if (!json_is_object(o))
        return fail(cmd, "bad_request", "a command must be a JSON object");
    json_t *id = json_object_get(o, "id");
    if (id != NULL) {
        if (!json_is_integer(id))
            return fail(cmd, "bad_request", "id must be an integer");
        cmd->has_id = 1;
        cmd->id = json_integer_value(id);
    }
    json_t *op = json_object_get(o, "op");
    if (!json_is_string(op) || strlen(json_string_value(op)) != json_string_length(op))
        return fail(cmd, "bad_request", "op must be a string");
    int k = -1;
    for (size_t i = 0; i < PL_ARRAY_LEN(op_names); i++)
        if (strcmp(json_string_value(op), op_names[i]) == 0)
            k = (int)i;
    if (k < 0)
        return fail(cmd, "bad_request", "unknown op");
    cmd->op = (pl_op_t)k;

    switch (cmd->op) {
    case OP_AUTH: {
        json_t *t = json_object_get(o, "token");
        if (!json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t))
            return fail(cmd, "bad_request", "token must be a string");
        cmd->token = json_string_value(t);
        return 0;
    }
    case OP_JOIN: {
        if (get_room(cmd, o) < 0)
            return -1;
        json_t *s = json_object_get(o, "since");
        if (s != NULL && !json_is_null(s)) {
            if (!json_is_integer(s) || json_integer_value(s) < 0)
                return fail(cmd, "bad_request", "since must be a non-negative integer");
            cmd->has_since = 1;
            cmd->since = json_integer_value(s);
        }
        return 0;
    }
    case OP_LEAVE:
    case OP_PRESENCE:
    case OP_TYPING:
        return get_room(cmd, o);
    case OP_SEND:
        if (get_room(cmd, o) < 0)
            return -1;
        return get_text(cmd, o, max_text);
    case OP_DM: {
        json_t *to = json_object_get(o, "to");
        if (!json_is_string(to) ||
            !pl_token_valid_user(json_string_value(to), json_string_length(to)))
            return fail(cmd, "bad_request", "to must be a user id");
        cmd->to = json_string_value(to);
        return get_text(cmd, o, max_text);
    }
    case OP_HISTORY: {
        if (get_room(cmd, o) < 0)
            return -1;
        json_t *b = json_object_get(o, "before");
        if (b != NULL && !json_is_null(b)) {
            if (!json_is_integer(b) || json_integer_value(b) < 1)
                return fail(cmd, "bad_request", "before must be a positive integer");
            cmd->before = json_integer_value(b);
        }
        cmd->limit = PL_HISTORY_DEFAULT;
        json_t *l = json_object_get(o, "limit");
        if (l != NULL && !json_is_null(l)) {
            if (!json_is_integer(l) || json_integer_value(l) < 1 ||
                json_integer_value(l) > PL_HISTORY_MAX)
                return fail(cmd, "bad_request", "limit must be an integer 1-100");
            cmd->limit = (int)json_integer_value(l);
        }
        return 0;
    }
    }
    return fail(cmd, "bad_request", "unknown op");
}

void pl_cmd_free(pl_cmd_t *cmd)
{
    json_decref(cmd->root);
    cmd->root = NULL;
}

/* ===================================================================== */
/* per-worker and per-connection state                                    */

/* Chat series in the worker's metrics block (pl_metrics_register); one
 * worker per process, so plain statics. */
static pl_metrics_t *metrics;
static int m_messages = -1;     /* messages stored (send/dm, not cid repeats) */
static int m_deliveries = -1;   /* msg events queued to client connections */
static int m_unavailable = -1;  /* commands answered unavailable */
static int m_redis_errors = -1; /* error replies from Redis */

static void count(int id, int64_t n)
{
    if (metrics)
        pl_metrics_add(metrics, id, n);
}

typedef struct proto {
    pl_worker_t *w;
    pl_bus_t *bus;
    pl_rooms_t rooms;
    uint8_t *secret; /* token secret, NULL = every auth fails */
    size_t secret_len;
    struct event *beat;    /* presence heartbeat */
    char origin[160];      /* "<node_id>.<pid>": envelope origin and presence member
                            * part; the pid keeps two nodes sharing a node_id (or a
                            * respawned worker) apart */
    uint64_t room_gen;     /* incarnation counter for rooms (stale fetch replies) */
    pl_map_t dms;          /* "<user>|<dm room>" -> dmstream_t: DM order per local user */
    struct event *refetch; /* retries room fetches that failed (Redis LOADING, lost link) */
    pl_db_t *db;           /* MySQL pool (older history, seq floor); NULL = mysql_url off */
    pl_map_t sends;        /* room -> sendorder_t: sends whose seq may need the floor */
} proto_t;

typedef struct session {
    pl_conn_t *c; /* NULL once the transport closed it */
    proto_t *p;
    int refs; /* the connection's + one per request in flight */
    int authed;
    int auth_wait;   /* authed, reply held until the user channel is subscribed */
    int auth_has_id; /* the held reply's id */
    int64_t auth_id;
    pl_auth_t auth;
    char sid[33]; /* session id, 128 random bits in hex */
    struct event *auth_timer;
    pl_ratelimit_t rl;
    pl_member_t *rooms; /* conn -> rooms */
} session_t;

/* One command waiting for Redis. */
typedef struct req {
    session_t *s;
    int has_id;
    int64_t id;
    pl_op_t op;
    char room[PL_ROOM_MAX + 1];
    uint64_t room_gen; /* join: the room incarnation it waits on */
    struct req *next;  /* join: on the room's waiter list */
    int has_since;
    int64_t since;
    int64_t upto; /* join recovery: last seq to fetch */
    int limit;    /* history */
    int64_t before;
    pl_history_page_t recent; /* history: the Redis part while the older one is fetched */
    int dm;                   /* send: publish to the two user channels */
    char peer_a[PL_USER_MAX + 1], peer_b[PL_USER_MAX + 1];
    char *text; /* send: raw text */
    size_t text_len;
    char *cid;
    char msg_id[33];
    int probe;         /* send: issued with an unknown floor, counted in sendorder inflight */
    struct req *snext; /* send: on a sendorder queue */
} req_t;

static proto_t *proto_of(pl_conn_t *c)
{
    return c->w->proto;
}

static void session_unref(session_t *s)
{
    if (--s->refs > 0)
        return;
    pl_auth_free(&s->auth);
    free(s);
}

static req_t *req_new(session_t *s, const pl_cmd_t *cmd)
{
    req_t *q = pl_xcalloc(1, sizeof(*q));
    q->s = s;
    s->refs++;
    q->has_id = cmd->has_id;
    q->id = cmd->id;
    q->op = cmd->op;
    if (cmd->room)
        snprintf(q->room, sizeof(q->room), "%s", cmd->room);
    return q;
}

static void req_free(req_t *q)
{
    pl_history_page_free(&q->recent);
    free(q->text);
    free(q->cid);
    session_unref(q->s);
    free(q);
}

/* ===================================================================== */
/* replies                                                                */

static void send_json(session_t *s, json_t *o)
{
    if (s->c == NULL) {
        json_decref(o);
        return;
    }
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (txt) {
        pl_conn_send_text(s->c, txt, strlen(txt));
        free(txt);
    }
}

static json_t *ok_obj(int has_id, int64_t id)
{
    json_t *o = json_object();
    if (has_id)
        json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "ok", json_true());
    return o;
}

static void reply_error(session_t *s, int has_id, int64_t id, const char *code, const char *msg)
{
    if (strcmp(code, "unavailable") == 0)
        count(m_unavailable, 1);
    json_t *o = json_object();
    if (has_id)
        json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_string(code));
    json_object_set_new(o, "message", json_string(msg));
    send_json(s, o);
}

static void req_error(req_t *q, const char *code, const char *msg)
{
    reply_error(q->s, q->has_id, q->id, code, msg);
}

/* A JSON string literal for s (with quotes), malloc'd. */
static char *json_literal(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    char *out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    return out;
}

/* ===================================================================== */
/* delivery                                                               */

static void room_channel(char *buf, const char *room)
{
    pl_key_room(buf, room, "ch");
}

static void start_fetch(proto_t *p, pl_room_t *r);
static void join_ready(proto_t *p, req_t *q);

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
            count(m_deliveries, 1);
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

static void leave_member(proto_t *p, session_t *s, pl_member_t *m);

/* Answers every join waiting on the room with an error. With unjoin the
 * waiting members are removed too (they never got their stream), which may
 * drop the room itself: callers must not touch r afterwards. */
static void fail_waiters(proto_t *p, pl_room_t *r, const char *code, const char *msg, int unjoin)
{
    req_t *q = r->waiters;
    r->waiters = NULL;
    while (q) {
        req_t *next = q->next;
        pl_member_t *m = unjoin && q->s->c ? pl_room_member(q->s->rooms, q->room) : NULL;
        if (m)
            leave_member(p, q->s, m);
        req_error(q, code, msg);
        req_free(q);
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
        start_fetch(p, r);
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
        fail_waiters(p, r, "unavailable", "redis unavailable", 1);
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
static void start_fetch(proto_t *p, pl_room_t *r)
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
        fail_waiters(p, r, "unavailable", "redis unavailable", 1);
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
        start_fetch(p, r);
        return;
    }
    fanout_msg(r, seq, f, origin);
    r->last_seq = seq;
}

/* Channel names: "parley:{<room>}:ch" and "parley:user:{<user>}". */
static int channel_room(const char *ch, size_t n, char *room)
{
    if (n < 12 || strncmp(ch, "parley:{", 8) != 0 || strcmp(ch + n - 4, "}:ch") != 0)
        return -1;
    size_t rl = n - 12;
    if (rl < 1 || rl > PL_ROOM_MAX)
        return -1;
    memcpy(room, ch + 8, rl);
    room[rl] = '\0';
    return 0;
}

static int channel_user(const char *ch, size_t n, char *user)
{
    if (n < 14 || strncmp(ch, "parley:user:{", 13) != 0 || ch[n - 1] != '}')
        return -1;
    size_t ul = n - 14;
    if (ul < 1 || ul > PL_USER_MAX)
        return -1;
    memcpy(user, ch + 13, ul);
    user[ul] = '\0';
    return 0;
}

/* ---- DMs: per local user and dm room, the same in-order, once-only
 * stream as rooms, fed by the user's channel. A gap (a DM published while
 * the user channel was resubscribing) is filled from the dm room's recent
 * zset before newer DMs are released. */

typedef struct dmstream {
    int64_t last;  /* last seq delivered to this user's connections (0 = none yet) */
    int64_t acked; /* highest seq a dm of this user from this worker got (seq floor hint) */
    int fetching;  /* catch-up in flight: live DMs queue in pending */
    pl_mqueue_t pending;
    char user[PL_USER_MAX + 1];
    char room[PL_ROOM_MAX + 1];
} dmstream_t;

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
                count(m_deliveries, 1);
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

static dmstream_t *dm_stream(proto_t *p, const char *user, const char *room)
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
static void dm_forget(proto_t *p, const char *user)
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

static void on_bus_message(void *arg, const char *channel, size_t chlen, const char *payload,
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

static void auth_reply(session_t *s);

static void on_bus_subscribed(void *arg, const char *channel)
{
    proto_t *p = arg;
    char room[PL_ROOM_MAX + 1];
    if (channel_user(channel, strlen(channel), room) == 0) {
        const pl_user_conns_t *u = pl_user_get(&p->rooms, room);
        for (size_t i = 0; u && i < u->n; i++) {
            session_t *s = ((pl_conn_t *)u->conns[i])->session;
            if (s && s->auth_wait)
                auth_reply(s);
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
    start_fetch(p, r);
}

static void on_bus_sub_down(void *arg)
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
            fail_waiters(p, r, "unavailable", "redis unavailable", 1);
        free(waiting[k]);
    }
    free(waiting);
}

static void on_beat(evutil_socket_t fd, short what, void *arg);

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
            start_fetch(p, r);
        free(names[k]);
    }
    free(names);
}

static void on_refetch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refetch_rooms(arg);
}

static void on_bus_cmd_up(void *arg)
{
    proto_t *p = arg;
    pl_script_load_all(p->bus); /* ahead of every script call on this link */
    on_beat(-1, 0, p); /* a restarted Redis may have lost presence: refresh now */
    refetch_rooms(p);
}

/* ===================================================================== */
/* presence                                                               */

static void on_ignore(void *arg, redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        count(m_redis_errors, 1);
        pl_log_warn("redis command failed\terror=\"%s\"", r->str);
    }
}

static void presence_member(proto_t *p, const char *user, char *out, size_t n)
{
    snprintf(out, n, "%s|%s|%d", user, p->origin, p->w->index);
}

/* Runs the presence script; extra are the op's arguments. */
static int presence_call(proto_t *p, const char *op, const char *room, uint64_t conn, int nextra,
                         const char **extra, pl_bus_reply_fn fn, void *arg)
{
    char key[PL_KEY_MAX], ch[PL_KEY_MAX], window[16], worker[16], cid[24], ttl[16];
    pl_key_room(key, room, "presence");
    room_channel(ch, room);
    snprintf(window, sizeof(window), "%d", PRESENCE_WINDOW_MS);
    snprintf(worker, sizeof(worker), "%d", p->w->index);
    snprintf(cid, sizeof(cid), "%" PRIu64, conn);
    snprintf(ttl, sizeof(ttl), "%d", PRESENCE_KEY_TTL_MS);
    char *rj = json_literal(room, strlen(room));
    const char *args[PRES_NARGS + 64];
    args[PRES_OP] = op;
    args[PRES_WINDOW] = window;
    args[PRES_ROOM] = room;
    args[PRES_ROOM_JSON] = rj;
    args[PRES_CHANNEL] = ch;
    args[PRES_NODE] = p->origin;
    args[PRES_WORKER] = worker;
    args[PRES_CONN] = cid;
    args[PRES_KEY_TTL] = ttl;
    for (int i = 0; i < nextra && i < 64; i++)
        args[PRES_NARGS + i] = extra[i];
    const char *keys[] = {key};
    int rc = pl_script_call(p->bus, PL_SCRIPT_PRESENCE, 1, keys,
                            PRES_NARGS + (nextra < 64 ? nextra : 64), args, NULL, fn, arg);
    free(rj);
    return rc;
}

static void presence_change(proto_t *p, const char *op, const char *room, const char *user,
                            uint64_t conn)
{
    char member[PL_MEMBER_MAX];
    presence_member(p, user, member, sizeof(member));
    const char *extra[] = {user, member};
    presence_call(p, op, room, conn, 2, extra, on_ignore, NULL);
}

/* Heartbeat: refresh every local member of every room (and let the
 * script prune and announce members whose node stopped refreshing). */
static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proto_t *p = arg;
    if (!pl_bus_ready(p->bus))
        return;
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->rooms.rooms, &i); e;
         e = pl_map_next(&p->rooms.rooms, e, &i)) {
        pl_room_t *r = e->val;
        for (size_t u = 0; u < r->nusers; u += 64) {
            size_t n = r->nusers - u < 64 ? r->nusers - u : 64;
            char(*members)[PL_MEMBER_MAX] = pl_xmalloc(n * sizeof(*members));
            const char *extra[64];
            for (size_t k = 0; k < n; k++) {
                presence_member(p, r->users[u + k].user, members[k], sizeof(members[k]));
                extra[k] = members[k];
            }
            presence_call(p, "refresh", r->name, 0, (int)n, extra, on_ignore, NULL);
            free(members);
        }
    }
}

/* ===================================================================== */
/* join / leave                                                           */

static void leave_member(proto_t *p, session_t *s, pl_member_t *m)
{
    pl_room_t *r = m->room;
    int last_user, empty;
    pl_room_leave(m, &s->rooms, &last_user, &empty);
    if (last_user)
        presence_change(p, "leave", r->name, s->auth.user, s->c ? s->c->id : 0);
    if (empty) {
        char ch[PL_KEY_MAX];
        room_channel(ch, r->name);
        pl_bus_unsubscribe(p->bus, ch);
        fail_waiters(p, r, "not_joined", "left before the join completed", 0);
        pl_room_drop(&p->rooms, r);
    }
}

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
            count(m_deliveries, 1);
        }
    }
    pl_mqueue_clear(&mq);
}

static void on_recover(void *arg, int status, pl_history_page_t *page)
{
    req_t *q = arg;
    session_t *s = q->s;
    proto_t *p = s->p;
    pl_member_t *m = s->c ? pl_room_member(s->rooms, q->room) : NULL;
    if (m == NULL || !m->recovering) {
        req_free(q);
        return;
    }
    if (status < 0) {
        m->recovering = 0;
        leave_member(p, s, m);
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
        return;
    }
    int recovered = 1;
    int64_t expect = q->since + 1;
    for (size_t i = 0; i < page->n; i++) {
        pl_hmsg_t *h = &page->v[i];
        if (h->seq <= m->cursor || (q->upto >= 0 && h->seq > q->upto))
            continue;
        if (h->seq > expect)
            recovered = 0;
        pl_conn_send_text(s->c, h->json, h->len);
        count(m_deliveries, 1);
        m->cursor = h->seq;
        expect = h->seq + 1;
    }
    int64_t seq = q->upto >= 0 ? q->upto : m->cursor;
    if (q->upto >= 0 && expect <= q->upto)
        recovered = 0; /* the newest ones are gone too */
    if (m->cursor < seq)
        m->cursor = seq;
    json_t *o = ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "recovered", json_boolean(recovered));
    send_json(s, o);
    /* then the live messages that arrived meanwhile */
    release_member(m);
    req_free(q);
}

/* The room is READY: answer the join (after recovery when since given). */
static void join_ready(proto_t *p, req_t *q)
{
    session_t *s = q->s;
    pl_room_t *r = pl_room_get(&p->rooms, q->room);
    pl_member_t *m = s->c ? pl_room_member(s->rooms, q->room) : NULL;
    if (m == NULL || r == NULL) {
        req_error(q, "not_joined", "left before the join completed");
        req_free(q);
        return;
    }
    /* head: the last seq this connection gets through the live path. For
     * dm rooms that path is the user's channel (dmstream), not the room's. */
    int64_t head = r->last_seq;
    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    if (pl_room_dm_users(q->room, a, b) > 0) {
        dmstream_t *d = dm_stream(p, s->auth.user, q->room);
        if (d && d->last > head)
            head = d->last;
    }
    if (!q->has_since || q->since >= head) {
        m->cursor = head;
        json_t *o = ok_obj(q->has_id, q->id);
        json_object_set_new(o, "room", json_string(q->room));
        json_object_set_new(o, "seq", json_integer(head));
        /* a since ahead of the room means its state was lost (Redis lost
         * its data); the room continues above the old seqs, but what the
         * client missed cannot be told: not recovered */
        if (q->has_since)
            json_object_set_new(o, "recovered", json_boolean(q->since == head));
        send_json(s, o);
        release_member(m);
        req_free(q);
        return;
    }
    m->recovering = 1;
    m->cursor = q->since;
    q->upto = head;
    if (pl_history_range(p->bus, q->room, q->since, q->upto, on_recover, q) < 0) {
        m->recovering = 0;
        leave_member(p, s, m);
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
    }
}

static void cmd_join(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
        reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    pl_member_t *old = pl_room_member(s->rooms, cmd->room);
    if (old != NULL && !old->recovering && !cmd->has_since) {
        json_t *o = ok_obj(cmd->has_id, cmd->id);
        json_object_set_new(o, "room", json_string(cmd->room));
        json_object_set_new(o, "seq", json_integer(old->cursor));
        send_json(s, o);
        return;
    }
    if (old != NULL) {
        reply_error(s, cmd->has_id, cmd->id, "bad_request", "already joined");
        return;
    }
    if (!pl_bus_ready(p->bus) || !pl_bus_sub_ready(p->bus)) {
        reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
        return;
    }
    int first_conn, first_user;
    pl_member_t *m = pl_room_join(&p->rooms, cmd->room, s->c, s->c->id, s->auth.user, &s->rooms,
                                  &first_conn, &first_user);
    pl_room_t *r = m->room;
    if (r->gen == 0)
        r->gen = ++p->room_gen;
    /* until the join is answered, live messages wait on the member: the
     * reply's seq (or the recovery) decides where its stream starts */
    m->recovering = 1;
    if (first_user)
        presence_change(p, "join", r->name, s->auth.user, s->c->id);
    pl_conn_log(s->c, PL_LOG_DEBUG, "join\troom=%s since=%" PRId64 " first=%d", r->name,
                cmd->has_since ? cmd->since : -1, first_conn);
    req_t *q = req_new(s, cmd);
    q->has_since = cmd->has_since;
    q->since = cmd->since;
    q->room_gen = r->gen;
    if (first_conn) {
        char ch[PL_KEY_MAX];
        room_channel(ch, r->name);
        pl_bus_subscribe(p->bus, ch);
        if (pl_bus_subscribed(p->bus, ch))
            r->subscribed = 1;
    }
    if (r->stream == ROOM_READY) {
        join_ready(p, q);
        return;
    }
    q->next = r->waiters;
    r->waiters = q;
    if (r->subscribed && !r->fetching)
        start_fetch(p, r);
}

static void cmd_leave(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_member_t *m = pl_room_member(s->rooms, cmd->room);
    if (m == NULL) {
        reply_error(s, cmd->has_id, cmd->id, "not_joined", "not joined to this room");
        return;
    }
    pl_conn_log(s->c, PL_LOG_DEBUG, "leave\troom=%s", cmd->room);
    leave_member(p, s, m);
    json_t *o = ok_obj(cmd->has_id, cmd->id);
    json_object_set_new(o, "room", json_string(cmd->room));
    send_json(s, o);
}

/* ===================================================================== */
/* send / dm                                                              */

static void run_send(proto_t *p, req_t *q, const char *floor);

static void send_reply(req_t *q, const char *res)
{
    /* res: "<seq> <ts> <msg_id>" */
    int64_t seq = 0, ts = 0;
    char msg_id[40] = "";
    if (sscanf(res, "%" SCNd64 " %" SCNd64 " %39s", &seq, &ts, msg_id) != 3) {
        req_error(q, "unavailable", "unexpected reply from redis");
        return;
    }
    pl_room_t *r = pl_room_get(&q->s->p->rooms, q->room);
    if (r && seq > r->max_acked)
        r->max_acked = seq;
    if (q->dm && q->s->c) {
        dmstream_t *d = dm_stream(q->s->p, q->s->auth.user, q->room);
        if (d && seq > d->acked)
            d->acked = seq;
    }
    json_t *o = ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "ts", json_integer(ts));
    json_object_set_new(o, "msg_id", json_string(msg_id));
    send_json(q->s, o);
}

/* ---- Seq floor and send order. When the send script finds no seq key
 * for a room it answers noseq, and the floor (the room's highest seq ever,
 * from MySQL) must be looked up before the send is re-run with it. Sends
 * of the room issued before that re-run come back noseq too, and sends
 * issued after it would overtake them. So per room this worker keeps a
 * sendorder_t: once a noseq is seen the room is blocked: sends coming back
 * noseq queue in `probes` (reply order = issue order), new sends queue in
 * `held`; when the floor is known and no probe is in flight any more, both
 * are re-run in that order on the one command connection, so Redis
 * assigns seqs in arrival order. */

typedef struct sendorder {
    char room[PL_ROOM_MAX + 1];
    int inflight; /* sends issued with an unknown floor, reply pending */
    int blocked;  /* a noseq was seen: queue every send until the flush */
    int looking;  /* the floor lookup is in flight */
    int floor_ok; /* the floor is known (floor) */
    int64_t floor;
    req_t *probes, **probes_tail; /* came back noseq, in reply order */
    req_t *held, **held_tail;     /* arrived while blocked */
} sendorder_t;

static sendorder_t *order_get(proto_t *p, const char *room, int create)
{
    sendorder_t *o = pl_map_get(&p->sends, room);
    if (o == NULL && create) {
        o = pl_xcalloc(1, sizeof(*o));
        snprintf(o->room, sizeof(o->room), "%s", room);
        o->probes_tail = &o->probes;
        o->held_tail = &o->held;
        pl_map_put(&p->sends, o->room, o);
    }
    return o;
}

static void order_push(req_t ***tail, req_t *q)
{
    q->snext = NULL;
    **tail = q;
    *tail = &q->snext;
}

/* Unlinks o and returns its queued sends, probes first. A probe still in
 * flight keeps being counted, on a fresh entry. */
static req_t *order_take(proto_t *p, sendorder_t *o)
{
    *o->probes_tail = o->held;
    req_t *q = o->probes;
    int inflight = o->inflight;
    pl_map_del(&p->sends, o->room);
    if (inflight > 0)
        order_get(p, o->room, 1)->inflight = inflight;
    free(o);
    return q;
}

/* Releases o when nothing waits on it any more; re-runs its queue once the
 * floor is known and no probe is out. Call last: o may go. */
static void order_settle(proto_t *p, sendorder_t *o)
{
    if (o->inflight > 0 || o->looking)
        return;
    if (!o->blocked) {
        pl_map_del(&p->sends, o->room);
        free(o);
        return;
    }
    if (!o->floor_ok)
        return;
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, o->floor);
    for (req_t *q = order_take(p, o); q;) {
        req_t *next = q->snext;
        q->snext = NULL;
        run_send(p, q, buf);
        q = next;
    }
}

typedef struct floorreq {
    proto_t *p;
    char room[PL_ROOM_MAX + 1];
} floorreq_t;

static void on_floor(void *arg, int status, int64_t floor)
{
    floorreq_t *f = arg;
    proto_t *p = f->p;
    sendorder_t *o = order_get(p, f->room, 0);
    free(f);
    assert(o != NULL && o->looking);
    o->looking = 0;
    if (status < 0) {
        /* no seq may be assigned without the floor: refuse what waits; the
         * room unblocks and the next noseq asks again */
        for (req_t *q = order_take(p, o); q;) {
            req_t *next = q->snext;
            q->snext = NULL;
            req_error(q, "unavailable", "archive unavailable");
            req_free(q);
            q = next;
        }
        return;
    }
    o->floor_ok = 1;
    o->floor = floor;
    order_settle(p, o);
}

/* The worker's best knowledge of the room's highest seq (floor hint). */
static int64_t floor_hint(req_t *q)
{
    pl_room_t *room = pl_room_get(&q->s->p->rooms, q->room);
    int64_t hint = 0;
    if (room)
        hint = room->last_seq > room->max_acked ? room->last_seq : room->max_acked;
    if (q->dm && q->s->c) {
        dmstream_t *d = dm_stream(q->s->p, q->s->auth.user, q->room);
        if (d && d->last > hint)
            hint = d->last;
        if (d && d->acked > hint)
            hint = d->acked;
    }
    return hint;
}

/* A send came back noseq: queue it and look the floor up once per room. */
static void send_noseq(proto_t *p, req_t *q)
{
    sendorder_t *o = order_get(p, q->room, 1);
    order_push(&o->probes_tail, q);
    if (o->blocked) {
        order_settle(p, o); /* o may go */
        return;
    }
    o->blocked = 1;
    o->looking = 1;
    floorreq_t *f = pl_xcalloc(1, sizeof(*f));
    f->p = p;
    snprintf(f->room, sizeof(f->room), "%s", q->room);
    /* may call on_floor at once (no MySQL): nothing may use o after this */
    pl_history_seq_floor(p->db, q->room, floor_hint(q), on_floor, f);
}

static void on_send(void *arg, redisReply *r)
{
    req_t *q = arg;
    proto_t *p = q->s->p;
    sendorder_t *o = NULL;
    if (q->probe) {
        q->probe = 0;
        o = order_get(p, q->room, 0);
        assert(o != NULL && o->inflight > 0);
        o->inflight--;
    }
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "noseq") == 0) {
        send_noseq(p, q); /* settles o */
        return;
    }
    if (r == NULL) {
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
    } else if (r->type == REDIS_REPLY_ERROR) {
        count(m_redis_errors, 1);
        pl_log_error("send script failed\troom=%s error=\"%s\"", q->room, r->str);
        req_error(q, "unavailable", "redis error");
        req_free(q);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               (strcmp(r->element[0]->str, "ok") == 0 || strcmp(r->element[0]->str, "dup") == 0) &&
               r->element[1]->type == REDIS_REPLY_STRING) {
        if (r->element[0]->str[0] == 'o')
            count(m_messages, 1);
        send_reply(q, r->element[1]->str);
        req_free(q);
    } else {
        req_error(q, "unavailable", "unexpected reply from redis");
        req_free(q);
    }
    if (o)
        order_settle(p, o);
}

static void run_send(proto_t *p, req_t *q, const char *floor)
{
    session_t *s = q->s;
    char kseq[PL_KEY_MAX], krecent[PL_KEY_MAX], kcid[PL_KEY_MAX], karch[PL_KEY_MAX];
    pl_key_room(kseq, q->room, "seq");
    pl_key_room(krecent, q->room, "recent");
    pl_key_cid(kcid, q->room, s->auth.user, q->cid ? q->cid : "");
    pl_key_room(karch, q->room, "archived");
    const char *keys[] = {kseq, krecent, kcid, PL_KEY_ARCHIVE, karch};

    char keep[24], ttl[24], worker[16], conn[24], ch1[PL_KEY_MAX], ch2[PL_KEY_MAX];
    snprintf(keep, sizeof(keep), "%" PRId64, p->w->cfg->history_recent);
    snprintf(ttl, sizeof(ttl), "%" PRId64, p->w->cfg->history_ttl);
    snprintf(worker, sizeof(worker), "%d", p->w->index);
    snprintf(conn, sizeof(conn), "%" PRIu64, s->c ? s->c->id : 0);
    char *rj = json_literal(q->room, strlen(q->room));
    char *tj = json_literal(q->text, q->text_len);
    const char *args[SEND_NARGS + 2];
    size_t lens[SEND_NARGS + 2];
    args[SEND_FLOOR] = floor;
    args[SEND_ROOM] = q->room;
    args[SEND_ROOM_JSON] = rj;
    args[SEND_MSG_ID] = q->msg_id;
    args[SEND_FROM] = s->auth.user;
    args[SEND_TEXT] = q->text;
    args[SEND_TEXT_JSON] = tj;
    args[SEND_KEEP] = keep;
    args[SEND_TTL] = ttl;
    args[SEND_NODE] = p->origin;
    args[SEND_WORKER] = worker;
    args[SEND_CONN] = conn;
    args[SEND_USE_CID] = q->cid ? "1" : "0";
    args[SEND_MYSQL] = p->db ? "1" : "0";
    int nargs = SEND_NARGS;
    if (q->dm) {
        pl_key_user(ch1, q->peer_a);
        pl_key_user(ch2, q->peer_b);
        args[nargs++] = ch1;
        args[nargs++] = ch2;
    } else {
        room_channel(ch1, q->room);
        args[nargs++] = ch1;
    }
    for (int i = 0; i < nargs; i++)
        lens[i] = strlen(args[i]);
    lens[SEND_TEXT] = q->text_len;
    int rc = pl_script_call(p->bus, PL_SCRIPT_SEND, 5, keys, nargs, args, lens, on_send, q);
    free(rj);
    free(tj);
    if (rc < 0) {
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
        return;
    }
    if (floor[0] == '\0') {
        /* may come back noseq: counted until its reply */
        q->probe = 1;
        order_get(p, q->room, 1)->inflight++;
    }
}

static void start_send(proto_t *p, session_t *s, const pl_cmd_t *cmd, const char *room, int dm,
                       const char *a, const char *b)
{
    if (!pl_bus_ready(p->bus)) {
        reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
        return;
    }
    req_t *q = req_new(s, cmd);
    snprintf(q->room, sizeof(q->room), "%s", room);
    q->dm = dm;
    if (dm) {
        snprintf(q->peer_a, sizeof(q->peer_a), "%s", a);
        snprintf(q->peer_b, sizeof(q->peer_b), "%s", b);
    }
    q->text = pl_xstrndup(cmd->text, cmd->text_len);
    q->text_len = cmd->text_len;
    if (cmd->cid)
        q->cid = pl_xstrdup(cmd->cid);
    uint8_t rnd[16];
    pl_random_bytes(rnd, sizeof(rnd));
    pl_hex(rnd, sizeof(rnd), q->msg_id);
    sendorder_t *o = order_get(p, q->room, 0);
    if (o && o->blocked) {
        order_push(&o->held_tail, q); /* keeps arrival order (see sendorder_t) */
        return;
    }
    run_send(p, q, "");
}

static void cmd_send(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (pl_room_member(s->rooms, cmd->room) == NULL) {
        reply_error(s, cmd->has_id, cmd->id, "not_joined", "join the room first");
        return;
    }
    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    int dm = pl_room_dm_users(cmd->room, a, b) > 0;
    start_send(p, s, cmd, cmd->room, dm, a, b);
}

static void cmd_dm(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    char room[PL_ROOM_MAX + 1], a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    if (pl_room_dm_name(s->auth.user, cmd->to, room) < 0 || pl_room_dm_users(room, a, b) <= 0) {
        reply_error(s, cmd->has_id, cmd->id, "bad_request", "to must be another user");
        return;
    }
    start_send(p, s, cmd, room, 1, a, b);
}

/* ===================================================================== */
/* history / presence / typing                                            */

static void history_reply(req_t *q, pl_history_page_t *older, int more)
{
    /* The stored events are JSON we built: splice them in as they are. */
    size_t cap = 256, n = 0;
    for (size_t i = 0; i < q->recent.n; i++)
        cap += q->recent.v[i].len + 1;
    for (size_t i = 0; older && i < older->n; i++)
        cap += older->v[i].len + 1;
    char *rj = json_literal(q->room, strlen(q->room));
    cap += strlen(rj);
    char *buf = pl_xmalloc(cap);
    if (q->has_id)
        n += (size_t)snprintf(buf + n, cap - n, "{\"id\":%" PRId64 ",\"ok\":true,", q->id);
    else
        n += (size_t)snprintf(buf + n, cap - n, "{\"ok\":true,");
    n += (size_t)snprintf(buf + n, cap - n, "\"room\":%s,\"messages\":[", rj);
    int first = 1;
    for (int part = 0; part < 2; part++) {
        pl_history_page_t *pg = part == 0 ? older : &q->recent;
        for (size_t i = 0; pg && i < pg->n; i++) {
            if (!first)
                buf[n++] = ',';
            first = 0;
            memcpy(buf + n, pg->v[i].json, pg->v[i].len);
            n += pg->v[i].len;
        }
    }
    n += (size_t)snprintf(buf + n, cap - n, "],\"more\":%s}", more ? "true" : "false");
    if (q->s->c)
        pl_conn_send_text(q->s->c, buf, n);
    free(buf);
    free(rj);
}

/* The oldest seq a reply holds (0 when empty). */
static int64_t oldest_seq(const pl_history_page_t *older, const pl_history_page_t *recent)
{
    if (older && older->n > 0)
        return older->v[0].seq;
    return recent->n > 0 ? recent->v[0].seq : 0;
}

static void on_history_older(void *arg, int status, pl_history_page_t *page)
{
    req_t *q = arg;
    if (status < 0) {
        req_error(q, "unavailable", "archive unavailable");
        req_free(q);
        return;
    }
    if (!pl_history_contiguous(page, &q->recent)) {
        /* never a page with a hole (see history.c for why this should not
         * happen: messages lost before they were archived, or a bug) */
        pl_log_error("history hole between mysql and redis, refused\troom=%s mysql_newest=%" PRId64
                     " redis_oldest=%" PRId64,
                     q->room, page->v[page->n - 1].seq, q->recent.v[0].seq);
        req_error(q, "unavailable", "archive not contiguous with recent history");
        req_free(q);
        return;
    }
    /* a full older part may have even older ones behind it; seqs start at 1 */
    history_reply(q, page, page->more && oldest_seq(page, &q->recent) > 1);
    req_free(q);
}

static void on_history(void *arg, int status, pl_history_page_t *page)
{
    req_t *q = arg;
    if (status < 0) {
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
        return;
    }
    /* keep the Redis part: the page is freed after this callback */
    q->recent = *page;
    memset(page, 0, sizeof(*page));
    int64_t older_before;
    int older_limit;
    proto_t *p = q->s->p;
    if (pl_history_older_needed(&q->recent, q->before, q->limit, &older_before, &older_limit)) {
        pl_history_older(p->db, q->room, older_before, older_limit, on_history_older, q);
        return;
    }
    /* a full Redis page: with MySQL, older ones exist below it unless it
     * reached seq 1 */
    int more = q->recent.more || (p->db && oldest_seq(NULL, &q->recent) > 1);
    history_reply(q, NULL, more);
    req_free(q);
}

static int may_read(session_t *s, const char *room)
{
    return pl_room_member(s->rooms, room) != NULL || pl_auth_room_allowed(&s->auth, room);
}

static void cmd_history(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
        reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    req_t *q = req_new(s, cmd);
    q->limit = cmd->limit;
    q->before = cmd->before;
    if (pl_history_recent(p->bus, cmd->room, cmd->before, cmd->limit, on_history, q) < 0) {
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
    }
}

static void on_presence_list(void *arg, redisReply *r)
{
    req_t *q = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            pl_log_error("presence script failed\troom=%s error=\"%s\"", q->room, r->str);
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
        return;
    }
    json_t *users = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        const char *bar = memchr(m->str, '|', m->len);
        size_t ul = bar ? (size_t)(bar - m->str) : m->len;
        int dup = 0;
        size_t k;
        json_t *u;
        json_array_foreach(users, k, u) if (json_string_length(u) == ul &&
                                            memcmp(json_string_value(u), m->str, ul) == 0) dup = 1;
        if (!dup)
            json_array_append_new(users, json_stringn(m->str, ul));
    }
    json_t *o = ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "users", users);
    send_json(q->s, o);
    req_free(q);
}

static void cmd_presence(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!may_read(s, cmd->room)) {
        reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    req_t *q = req_new(s, cmd);
    if (presence_call(p, "list", cmd->room, 0, 0, NULL, on_presence_list, q) < 0) {
        req_error(q, "unavailable", "redis unavailable");
        req_free(q);
    }
}

static void cmd_typing(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (pl_room_member(s->rooms, cmd->room) == NULL) {
        reply_error(s, cmd->has_id, cmd->id, "not_joined", "join the room first");
        return;
    }
    char ch[PL_KEY_MAX];
    room_channel(ch, cmd->room);
    char *rj = json_literal(cmd->room, strlen(cmd->room));
    char json[PL_ROOM_MAX * 2 + PL_USER_MAX + 64];
    int jl = snprintf(json, sizeof(json), "{\"ev\":\"typing\",\"room\":%s,\"user\":\"%s\"}", rj,
                      s->auth.user);
    free(rj);
    pl_envelope_t e = {
        .kind = PL_ENV_TYPING,
        .room = cmd->room,
        .room_len = strlen(cmd->room),
        .node = p->origin,
        .node_len = strlen(p->origin),
        .worker = p->w->index,
        .conn = s->c->id,
        .seq = 0,
        .json = json,
        .json_len = (size_t)jl,
    };
    size_t elen;
    char *env = pl_envelope_pack(&e, &elen);
    const char *argv[] = {"PUBLISH", ch, env};
    size_t lens[] = {7, strlen(ch), elen};
    int rc = pl_bus_command(p->bus, on_ignore, NULL, 3, argv, lens);
    free(env);
    if (rc < 0)
        reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
}

/* ===================================================================== */
/* auth                                                                   */

static void auth_reply(session_t *s)
{
    s->auth_wait = 0;
    json_t *o = ok_obj(s->auth_has_id, s->auth_id);
    json_object_set_new(o, "user", json_string(s->auth.user));
    json_object_set_new(o, "session", json_string(s->sid));
    send_json(s, o);
}

static void on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_t *s = arg;
    if (s->c == NULL)
        return;
    if (s->authed) {
        /* the user channel did not confirm in time (Redis trouble):
         * answer anyway; DMs start once it does */
        if (s->auth_wait)
            auth_reply(s);
        return;
    }
    reply_error(s, 0, 0, "unauthorized", "no auth in time");
    pl_conn_close(s->c, 1008, "no auth within auth_timeout");
}

static void cmd_auth(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    const char *why = "no token secret configured";
    if (p->secret == NULL || pl_auth_check(cmd->token, p->secret, p->secret_len,
                                           (int64_t)(pl_now_ms() / 1000), &s->auth, &why) < 0) {
        reply_error(s, cmd->has_id, cmd->id, "unauthorized", "invalid token");
        pl_conn_close(s->c, 1008, "auth failed: %s", why);
        return;
    }
    s->authed = 1;
    s->c->user = s->auth.user;
    if (s->auth_timer)
        evtimer_del(s->auth_timer);
    uint8_t rnd[16];
    pl_random_bytes(rnd, sizeof(rnd));
    pl_hex(rnd, sizeof(rnd), s->sid);
    pl_ratelimit_init(&s->rl, p->w->cfg->rate_limit, p->w->cfg->rate_burst, pl_mono_ms());
    char ch[PL_KEY_MAX];
    pl_key_user(ch, s->auth.user);
    if (pl_user_add(&p->rooms, s->auth.user, s->c))
        pl_bus_subscribe(p->bus, ch);
    pl_conn_log(s->c, PL_LOG_DEBUG, "authenticated\tsession=%s", s->sid);
    s->auth_has_id = cmd->has_id;
    s->auth_id = cmd->id;
    if (pl_bus_subscribed(p->bus, ch)) {
        auth_reply(s);
        return;
    }
    /* Hold the reply until DMs can reach this connection, so a DM sent
     * right after our reply is never lost; at most 2 s. */
    s->auth_wait = 1;
    struct timeval tv = {2, 0};
    evtimer_add(s->auth_timer, &tv);
}

/* ===================================================================== */
/* the seam (proto.h)                                                     */

int pl_proto_worker_start(struct pl_worker *w)
{
    proto_t *p = pl_xcalloc(1, sizeof(*p));
    p->w = w;
    metrics = w->metrics;
    if (metrics) {
        m_messages =
            pl_metrics_register(metrics, "parley_chat_messages_total", "counter",
                                "Chat messages stored (send and dm, cid repeats excluded).");
        m_deliveries = pl_metrics_register(metrics, "parley_chat_deliveries_total", "counter",
                                           "Chat msg events queued to client connections.");
        m_unavailable =
            pl_metrics_register(metrics, "parley_chat_unavailable_total", "counter",
                                "Chat commands answered unavailable (Redis down or lost).");
        m_redis_errors = pl_metrics_register(metrics, "parley_chat_redis_errors_total", "counter",
                                             "Error replies from Redis to chat commands.");
    }
    snprintf(p->origin, sizeof(p->origin), "%.120s.%d", w->node_id, (int)getpid());
    pl_rooms_init(&p->rooms);
    pl_map_init(&p->dms);
    if (pl_auth_load_secret(w->cfg, &p->secret, &p->secret_len) < 0)
        pl_log_error("no token secret (token_secret or token_secret_file): every auth will fail");
    char control[PL_KEY_MAX];
    snprintf(control, sizeof(control), "parley:node:{%s}:%d", w->node_id, w->index);
    pl_bus_handlers_t h = {
        .arg = p,
        .on_message = on_bus_message,
        .on_subscribed = on_bus_subscribed,
        .on_sub_down = on_bus_sub_down,
        .on_cmd_up = on_bus_cmd_up,
    };
    p->bus = pl_bus_new(w->base, w->cfg->redis_url, control, &h);
    if (p->bus == NULL) {
        pl_log_error("bad redis_url\turl=%s", w->cfg->redis_url);
        pl_rooms_free(&p->rooms);
        free(p->secret);
        free(p);
        return -1;
    }
    pl_map_init(&p->sends);
    p->db = w->cfg->mysql_url[0] ? pl_db_new(w->base, w->cfg->mysql_url, (int)w->cfg->mysql_pool)
                                 : NULL;
    p->refetch = evtimer_new(w->base, on_refetch, p);
    p->beat = event_new(w->base, -1, EV_PERSIST, on_beat, p);
    struct timeval tv = {PRESENCE_BEAT_MS / 1000, 0};
    evtimer_add(p->beat, &tv);
    w->proto = p;
    return 0;
}

void pl_proto_worker_drain(struct pl_worker *w)
{
    (void)w; /* the transport closes connections with 1001; each leaves its rooms */
}

void pl_proto_worker_stop(struct pl_worker *w)
{
    proto_t *p = w->proto;
    if (p == NULL)
        return;
    event_free(p->beat);
    event_free(p->refetch);
    p->refetch = NULL;
    /* pending floor and history lookups end with PL_DB_ECLOSED (failing
     * their sends/requests), then Redis callbacks run with NULL */
    pl_db_free(p->db);
    p->db = NULL;
    pl_bus_free(p->bus); /* pending callbacks run with NULL and free their requests */
    {
        size_t k;
        for (pl_map_entry_t *e = pl_map_first(&p->sends, &k); e; e = pl_map_next(&p->sends, e, &k))
            free(e->val); /* only counters can be left: every queued send was answered */
        pl_map_clear(&p->sends);
    }
    pl_rooms_free(&p->rooms);
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->dms, &i); e; e = pl_map_next(&p->dms, e, &i)) {
        dmstream_t *d = e->val;
        pl_mqueue_clear(&d->pending);
        free(d);
    }
    pl_map_clear(&p->dms);
    free(p->secret);
    free(p);
    w->proto = NULL;
}

void pl_proto_open(struct pl_conn *c)
{
    proto_t *p = proto_of(c);
    session_t *s = pl_xcalloc(1, sizeof(*s));
    s->c = c;
    s->p = p;
    s->refs = 1;
    c->session = s;
    s->auth_timer = evtimer_new(c->w->base, on_auth_timeout, s);
    int64_t ms = c->w->cfg->auth_timeout;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->auth_timer, &tv);
}

void pl_proto_message(struct pl_conn *c, const uint8_t *text, size_t len)
{
    session_t *s = c->session;
    proto_t *p = proto_of(c);
    if (s == NULL)
        return;
    pl_cmd_t cmd;
    int rc = pl_cmd_parse((const char *)text, len, (size_t)c->w->cfg->max_text_size, &cmd);
    if (!s->authed) {
        if (rc < 0 || cmd.op != OP_AUTH) {
            reply_error(s, cmd.has_id, cmd.id, "unauthorized", "the first frame must be auth");
            pl_conn_close(c, 1008, "first frame was not a valid auth");
        } else {
            cmd_auth(p, s, &cmd);
        }
        pl_cmd_free(&cmd);
        return;
    }
    switch (pl_ratelimit_take(&s->rl, pl_mono_ms())) {
    case PL_RATE_ALLOW:
        break;
    case PL_RATE_REJECT:
        pl_conn_log(c, PL_LOG_DEBUG, "rate limited\trejected=%u", s->rl.rejected);
        reply_error(s, cmd.has_id, cmd.id, "rate_limited", "slow down");
        pl_cmd_free(&cmd);
        return;
    case PL_RATE_ABUSIVE:
        pl_cmd_free(&cmd);
        pl_conn_close(c, 1008, "rate limit ignored\trejected=%u", s->rl.rejected);
        return;
    }
    if (rc < 0) {
        reply_error(s, cmd.has_id, cmd.id, cmd.err, cmd.msg);
        pl_cmd_free(&cmd);
        return;
    }
    switch (cmd.op) {
    case OP_AUTH:
        reply_error(s, cmd.has_id, cmd.id, "bad_request", "already authenticated");
        break;
    case OP_JOIN:
        cmd_join(p, s, &cmd);
        break;
    case OP_LEAVE:
        cmd_leave(p, s, &cmd);
        break;
    case OP_SEND:
        cmd_send(p, s, &cmd);
        break;
    case OP_DM:
        cmd_dm(p, s, &cmd);
        break;
    case OP_HISTORY:
        cmd_history(p, s, &cmd);
        break;
    case OP_PRESENCE:
        cmd_presence(p, s, &cmd);
        break;
    case OP_TYPING:
        cmd_typing(p, s, &cmd);
        break;
    }
    pl_cmd_free(&cmd);
}

void pl_proto_closed(struct pl_conn *c)
{
    session_t *s = c->session;
    proto_t *p = proto_of(c);
    if (s == NULL)
        return;
    while (s->rooms)
        leave_member(p, s, s->rooms);
    if (s->authed && pl_user_del(&p->rooms, s->auth.user, c)) {
        char ch[PL_KEY_MAX];
        pl_key_user(ch, s->auth.user);
        pl_bus_unsubscribe(p->bus, ch);
        dm_forget(p, s->auth.user);
    }
    if (s->auth_timer)
        event_free(s->auth_timer);
    s->auth_timer = NULL;
    s->c = NULL;
    c->session = NULL;
    c->user = NULL;
    session_unref(s);
}
