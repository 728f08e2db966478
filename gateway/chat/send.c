/*
 * Chat send and dm (docs/protocol.md 1.4, 3.3): the send script call, the
 * seq floor when Redis lost a room's seq, and the per-room FIFO that keeps
 * a worker's sends in arrival order while the floor is looked up.
 */
#include "auth.h"
#include "script.h"
#include "worker.h"
#include "chat.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <assert.h>

/* ===================================================================== */
/* send / dm                                                              */

static void run_send(proto_t *p, req_t *q, const char *floor);

static void send_reply(req_t *q, const char *res)
{
    /* res: "<seq> <ts> <msg_id>" */
    int64_t seq = 0, ts = 0;
    char msg_id[40] = "";
    if (sscanf(res, "%" SCNd64 " %" SCNd64 " %39s", &seq, &ts, msg_id) != 3) {
        chat_req_error(q, "unavailable", "unexpected reply from redis");
        return;
    }
    pl_room_t *r = pl_room_get(&q->s->p->rooms, q->room);
    if (r && seq > r->max_acked)
        r->max_acked = seq;
    if (q->dm && q->s->c) {
        dmstream_t *d = chat_dm_stream(q->s->p, q->s->auth.user, q->room);
        if (d && seq > d->acked)
            d->acked = seq;
    }
    json_t *o = chat_ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "ts", json_integer(ts));
    json_object_set_new(o, "msg_id", json_string(msg_id));
    chat_send_json(q->s, o);
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
            chat_req_error(q, "unavailable", "archive unavailable");
            chat_req_free(q);
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
        dmstream_t *d = chat_dm_stream(q->s->p, q->s->auth.user, q->room);
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
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
    } else if (r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_error("send script failed\troom=%s error=\"%s\"", q->room, r->str);
        chat_req_error(q, "unavailable", "redis error");
        chat_req_free(q);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               (strcmp(r->element[0]->str, "ok") == 0 || strcmp(r->element[0]->str, "dup") == 0) &&
               r->element[1]->type == REDIS_REPLY_STRING) {
        if (r->element[0]->str[0] == 'o')
            chat_count(chat_m_messages, 1);
        send_reply(q, r->element[1]->str);
        chat_req_free(q);
    } else {
        chat_req_error(q, "unavailable", "unexpected reply from redis");
        chat_req_free(q);
    }
    if (o)
        order_settle(p, o);
}

static void run_send(proto_t *p, req_t *q, const char *floor)
{
    session_t *s = q->s;
    char kseq[PL_KEY_MAX], krecent[PL_KEY_MAX], kcid[PL_KEY_MAX], karch[PL_KEY_MAX];
    char kblock[PL_KEY_MAX], kpres[PL_KEY_MAX];
    pl_key_seq(kseq, q->room);
    pl_key_recent(krecent, q->room);
    pl_key_cid(kcid, q->room, s->auth.user, q->cid ? q->cid : "");
    pl_key_archived(karch, q->room);
    pl_key_noseq(kblock, q->room, p->origin, p->w->index);
    pl_key_presence(kpres, q->room);
    const char *keys[SEND_NKEYS] = {kseq,  krecent, kcid, p->w->cfg->archive ? PL_KEY_ARCHIVE : "",
                                    karch, kblock,  kpres};

    char keep[24], ttl[24], worker[16], conn[24], ch1[PL_KEY_MAX], ch2[PL_KEY_MAX];
    snprintf(keep, sizeof(keep), "%" PRId64, p->w->cfg->history_recent);
    snprintf(ttl, sizeof(ttl), "%" PRId64, p->w->cfg->history_ttl);
    snprintf(worker, sizeof(worker), "%d", p->w->index);
    snprintf(conn, sizeof(conn), "%" PRIu64, s->c ? s->c->id : 0);
    char *rj = chat_json_literal(q->room, strlen(q->room));
    char *tj = chat_json_literal(q->text, q->text_len);
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
        pl_key_room_channel(ch1, q->room);
        args[nargs++] = ch1;
    }
    for (int i = 0; i < nargs; i++)
        lens[i] = strlen(args[i]);
    lens[SEND_TEXT] = q->text_len;
    int rc =
        pl_script_call(p->bus, PL_SCRIPT_SEND, SEND_NKEYS, keys, nargs, args, lens, on_send, q);
    free(rj);
    free(tj);
    if (rc < 0) {
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
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
        chat_reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
        return;
    }
    req_t *q = chat_req_new(s, cmd);
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
    if (chat_guard_hold(p, q))
        return; /* the room's seq is being raised after a reconnect (guard.c) */
    chat_send_go(p, q);
}

void chat_send_go(proto_t *p, req_t *q)
{
    sendorder_t *o = order_get(p, q->room, 0);
    if (o && o->blocked) {
        order_push(&o->held_tail, q); /* keeps arrival order (see sendorder_t) */
        return;
    }
    run_send(p, q, "");
}

void chat_cmd_send(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (pl_room_member(&s->rooms, cmd->room) == NULL) {
        chat_reply_error(s, cmd->has_id, cmd->id, "not_joined", "join the room first");
        return;
    }
    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    int dm = pl_room_dm_users(cmd->room, a, b) > 0;
    start_send(p, s, cmd, cmd->room, dm, a, b);
}

void chat_cmd_dm(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    char room[PL_ROOM_MAX + 1], a[PL_USER_MAX + 1], b[PL_USER_MAX + 1];
    if (pl_room_dm_name(s->auth.user, cmd->to, room) < 0 || pl_room_dm_users(room, a, b) <= 0) {
        chat_reply_error(s, cmd->has_id, cmd->id, "bad_request", "to must be another user");
        return;
    }
    start_send(p, s, cmd, room, 1, a, b);
}
