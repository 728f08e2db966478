/*
 * Chat protocol v1 (docs/protocol.md): parsing one client frame, the
 * per-connection session, dispatch to one handler per op (join.c, send.c,
 * history.c, presence.c; see chat.h), replies, auth and the seam: the chat
 * module's hooks (ops.h), registered for /ws by pl_chat_register.
 */
#include "cmd.h"
#include "chat.h"
#include "auth.h"
#include "bus.h"
#include "conn.h"
#include "db.h"
#include "envelope.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "ratelimit.h"
#include "register.h"
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

/* ===================================================================== */
/* parsing (pure, see cmd.h)                                              */

static const char *const op_names[] = {"auth",    "join",     "leave",  "send",   "dm",
                                       "history", "presence", "typing", "refresh"};

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

/* A non-negative integer field: 1 when present (into *v), 0 when absent
 * or null, -1 when anything else. min is the smallest allowed value. */
static int get_int(json_t *o, const char *name, int64_t min, int64_t *v)
{
    json_t *x = json_object_get(o, name);
    if (x == NULL || json_is_null(x))
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < min)
        return -1;
    *v = json_integer_value(x);
    return 1;
}

/* history: room, or sender alone (the cross-room form); before / after /
 * around seq bounds, from_ts / until_ts, sender, limit (docs/protocol.md
 * 1.5). Which combinations the user may ask for is checked in history.c
 * (the sender of the cross-room form must be the user). */
static int get_history(pl_cmd_t *cmd, json_t *o)
{
    json_t *snd = json_object_get(o, "sender");
    if (snd != NULL && !json_is_null(snd)) {
        if (!json_is_string(snd) ||
            !pl_token_valid_user(json_string_value(snd), json_string_length(snd)))
            return fail(cmd, "bad_request", "sender must be a user id");
        cmd->sender = json_string_value(snd);
    }
    json_t *r = json_object_get(o, "room");
    if ((r != NULL && !json_is_null(r)) || cmd->sender == NULL) {
        if (get_room(cmd, o) < 0)
            return -1;
    }
    if (get_int(o, "before", 1, &cmd->before) < 0)
        return fail(cmd, "bad_request", "before must be a positive integer");
    /* seqs and times past what a double (Redis scores, Lua numbers) or a
     * DATETIME holds are no real position: refused, not clamped */
    const int64_t seq_max = INT64_C(1) << 53, ts_max = INT64_C(253402300799999);
    int has_after = get_int(o, "after", 0, &cmd->after);
    if (has_after < 0 || cmd->after > seq_max)
        return fail(cmd, "bad_request", "after must be a non-negative integer");
    cmd->has_after = has_after;
    if (get_int(o, "around", 1, &cmd->around) < 0 || cmd->around > seq_max)
        return fail(cmd, "bad_request", "around must be a positive integer");
    if (cmd->around && (cmd->before || has_after))
        return fail(cmd, "bad_request", "around excludes before and after");
    if (has_after && cmd->before && cmd->before <= cmd->after + 1)
        return fail(cmd, "bad_request", "before must be above after + 1");
    cmd->from_ts = cmd->until_ts = -1;
    if (get_int(o, "from_ts", 0, &cmd->from_ts) < 0 || cmd->from_ts > ts_max)
        return fail(cmd, "bad_request", "from_ts must be a non-negative integer (unix ms)");
    if (get_int(o, "until_ts", 0, &cmd->until_ts) < 0 || cmd->until_ts > ts_max)
        return fail(cmd, "bad_request", "until_ts must be a non-negative integer (unix ms)");
    if (cmd->from_ts >= 0 && cmd->until_ts >= 0 && cmd->from_ts > cmd->until_ts)
        return fail(cmd, "bad_request", "from_ts must not be above until_ts");
    /* a cross-room page continues from its reply's "next" */
    json_t *cur = json_object_get(o, "cursor");
    if (cur != NULL && !json_is_null(cur)) {
        if (cmd->room != NULL || !json_is_string(cur))
            return fail(cmd, "bad_request", "cursor is for the cross-room form only");
        cmd->cursor = json_string_value(cur);
    }
    if (cmd->room == NULL && (cmd->before || has_after || cmd->around))
        return fail(cmd, "bad_request", "the cross-room form pages with cursor, not seqs");
    cmd->limit = PL_HISTORY_DEFAULT;
    json_t *l = json_object_get(o, "limit");
    if (l != NULL && !json_is_null(l)) {
        if (!json_is_integer(l) || json_integer_value(l) < 1 ||
            json_integer_value(l) > PL_HISTORY_MAX)
            return fail(cmd, "bad_request", "limit must be an integer 1-200");
        cmd->limit = (int)json_integer_value(l);
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
    case OP_AUTH:
    case OP_REFRESH: {
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
    case OP_HISTORY:
        return get_history(cmd, o);
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
int chat_m_messages = -1;     /* messages stored (send/dm, not cid repeats) */
int chat_m_deliveries = -1;   /* msg events queued to client connections */
int chat_m_unavailable = -1;  /* commands answered unavailable */
int chat_m_redis_errors = -1; /* error replies from Redis */
/* new messages under seqs already delivered (stream.c) */
int chat_m_seq_regressions = -1;
int chat_m_dm_streams = -1; /* gauge: DM streams held */

void chat_count(int id, int64_t n)
{
    if (metrics)
        pl_metrics_add(metrics, id, n);
}

void chat_limit(int id)
{
    if (metrics)
        pl_metrics_limit(metrics, id);
}

/* The limits' labels (their config keys) and their ids in the metrics
 * block (pl_metrics_limit_register, at worker start). */
static const char *const limit_names[CHAT_NLIMITS] = {
    [CHAT_LIMIT_UNAUTHENTICATED] = "max_unauthenticated",
    [CHAT_LIMIT_AUTH_MESSAGE] = "max_auth_message_size",
    [CHAT_LIMIT_USER_CONNECTIONS] = "max_user_connections",
    [CHAT_LIMIT_RATE] = "rate_limit",
    [CHAT_LIMIT_TYPING] = "typing_interval",
    [CHAT_LIMIT_ROOMS] = "max_rooms_per_connection",
};
static int limit_ids[CHAT_NLIMITS];

void chat_limit_hit(session_t *s, enum chat_user_limit l, const char *detail)
{
    chat_limit(limit_ids[l]);
    if (s->c == NULL || (s->limits_logged & (1u << l)))
        return;
    s->limits_logged |= 1u << l;
    /* typing faster than typing_interval is what every client does */
    pl_conn_log(s->c, l == CHAT_LIMIT_TYPING ? PL_LOG_DEBUG : PL_LOG_INFO,
                "limit reached\tlimit=%s%s", limit_names[l], detail);
}

/* ---- connections not authenticated yet (max_unauthenticated) ----
 *
 * Kept here, not in the transport: "authenticated" is the chat protocol's
 * notion, and the list needs nothing of the transport. A WebSocket is on
 * it from open until auth succeeds or it closes, oldest first, so the one
 * to close when a new one would pass the limit is found in O(1). Sockets
 * still in their HTTP handshake are the transport's (handshake_timeout,
 * max_connections). */

static void unauth_del(proto_t *p, session_t *s)
{
    if (!s->on_unauth)
        return;
    if (s->uprev)
        s->uprev->unext = s->unext;
    else
        p->unauth_head = s->unext;
    if (s->unext)
        s->unext->uprev = s->uprev;
    else
        p->unauth_tail = s->uprev;
    s->unext = s->uprev = NULL;
    s->on_unauth = 0;
    p->nunauth--;
}

/* Adds a new connection; past max_unauthenticated the oldest one waiting
 * is closed with 1013 (try again later: it did nothing wrong itself, but
 * a client that cannot authenticate in time must not hold the place of
 * one that can). */
static void unauth_add(proto_t *p, session_t *s)
{
    s->uprev = p->unauth_tail;
    if (p->unauth_tail)
        p->unauth_tail->unext = s;
    else
        p->unauth_head = s;
    p->unauth_tail = s;
    s->on_unauth = 1;
    p->nunauth++;
    while (p->nunauth > p->max_unauth && p->unauth_head != s) {
        session_t *old = p->unauth_head;
        unauth_del(p, old);
        if (old->c->state != CONN_OPEN)
            continue; /* already closing (its auth failed): just off the list */
        char detail[48];
        snprintf(detail, sizeof(detail), " max=%zu", p->max_unauth);
        chat_limit_hit(old, CHAT_LIMIT_UNAUTHENTICATED, detail);
        pl_conn_close(old->c, PL_WS_CLOSE_TRY_AGAIN, "too many unauthenticated connections");
    }
}

static void session_unref(session_t *s)
{
    if (--s->refs > 0)
        return;
    pl_auth_free(&s->auth);
    free(s);
}

req_t *chat_req_new(session_t *s, const pl_cmd_t *cmd)
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

void chat_req_free(req_t *q)
{
    pl_history_page_free(&q->recent);
    free(q->text);
    free(q->cid);
    session_unref(q->s);
    free(q);
}

/* ===================================================================== */
/* replies                                                                */

void chat_send_json(session_t *s, json_t *o)
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

json_t *chat_ok_obj(int has_id, int64_t id)
{
    json_t *o = json_object();
    if (has_id)
        json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "ok", json_true());
    return o;
}

void chat_reply_error(session_t *s, int has_id, int64_t id, const char *code, const char *msg)
{
    if (strcmp(code, "unavailable") == 0)
        chat_count(chat_m_unavailable, 1);
    json_t *o = json_object();
    if (has_id)
        json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_string(code));
    json_object_set_new(o, "message", json_string(msg));
    chat_send_json(s, o);
}

void chat_req_error(req_t *q, const char *code, const char *msg)
{
    chat_reply_error(q->s, q->has_id, q->id, code, msg);
}

/* A JSON string literal for s (with quotes), malloc'd; NULL if s is not
 * UTF-8. The same escaper as history pages, so stored and rebuilt events
 * are byte-identical. */
char *chat_json_literal(const char *s, size_t n)
{
    pl_buf_t b = {0};
    if (pl_history_json_string(&b, s, n) < 0) {
        free(b.p);
        return NULL;
    }
    pl_buf_add(&b, "", 1);
    return b.p;
}

/* ===================================================================== */
/* auth                                                                   */

/* A private-use close code (RFC 6455 7.4.2): docs/protocol.md 1.7. */
#define CLOSE_TOKEN_EXPIRED 4001

static pl_token_rules_t token_rules(const proto_t *p)
{
    pl_token_rules_t r = {.secret = p->secret,
                          .secret_len = p->secret_len,
                          .issuer = p->w->cfg->token_issuer,
                          .audience = p->w->cfg->token_audience};
    return r;
}

/* 1 once the session's token has expired (exp <= now, as at auth). The
 * timer below closes such a session; dispatch checks too, so no command
 * runs between exp and the timer. */
static int token_expired(const session_t *s)
{
    return (int64_t)(pl_now_ms() / 1000) >= s->auth.exp;
}

static void arm_expiry(session_t *s);

static void on_token_expired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_t *s = arg;
    if (s->c == NULL)
        return;
    if (!token_expired(s)) {
        arm_expiry(s); /* the wall clock went back since the timer was armed */
        return;
    }
    pl_conn_close_reason(s->c, CLOSE_TOKEN_EXPIRED, "token expired", "token expired\texp=%" PRId64,
                         s->auth.exp);
}

/* (Re)arms the session's expiry timer for auth.exp (wall clock seconds;
 * the timer itself runs on libevent's monotonic clock). A far exp (any
 * int64 is a valid claim) waits a day at a time: no overflow, and the
 * callback re-arms. */
static void arm_expiry(session_t *s)
{
    if (s->exp_timer == NULL)
        s->exp_timer = evtimer_new(s->c->w->base, on_token_expired, s);
    int64_t now_ms = (int64_t)pl_now_ms();
    int64_t ms = 86400000;
    if (s->auth.exp - now_ms / 1000 < 86400)
        ms = s->auth.exp * 1000 - now_ms;
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(s->exp_timer, &tv);
}

/* idle_timeout: one timer per session, not re-armed on every command
 * (that would be an evtimer_add per frame). Each command only stamps
 * last_cmd_ms; when the timer fires it closes the connection if the
 * session really was quiet that long, else waits out the rest. Pings and
 * pongs never reach this layer, so they do not count. */
static void arm_idle(session_t *s, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(s->idle_timer, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_t *s = arg;
    if (s->c == NULL)
        return;
    int64_t limit = s->c->w->cfg->idle_timeout;
    int64_t quiet = (int64_t)(pl_mono_ms() - s->last_cmd_ms);
    if (quiet < limit) {
        arm_idle(s, limit - quiet);
        return;
    }
    pl_conn_close_reason(s->c, PL_WS_CLOSE_NORMAL, "idle", "idle\tidle_timeout=%" PRId64 "ms",
                         limit);
}

void chat_auth_reply(session_t *s)
{
    s->auth_wait = 0;
    if (s->uconn_wait)
        return; /* and for the max_user_connections check (userconn.c) */
    json_t *o = chat_ok_obj(s->auth_has_id, s->auth_id);
    json_object_set_new(o, "user", json_string(s->auth.user));
    json_object_set_new(o, "session", json_string(s->sid));
    chat_send_json(s, o);
    /* The timer only guards the auth phase; an idle connection should not
     * carry it for life (libevent allows this from its own callback). */
    if (s->auth_timer) {
        event_free(s->auth_timer);
        s->auth_timer = NULL;
    }
}

static void on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_t *s = arg;
    if (s->c == NULL)
        return;
    if (s->authed) {
        /* the user channel did not confirm in time, or the connection
         * count did not come back (Redis trouble): answer anyway; DMs
         * start once it does */
        if (s->auth_wait || s->uconn_wait) {
            s->uconn_wait = 0;
            chat_auth_reply(s);
        }
        return;
    }
    chat_reply_error(s, 0, 0, "unauthorized", "no auth in time");
    pl_conn_close(s->c, PL_WS_CLOSE_POLICY, "no auth within auth_timeout");
}

static void cmd_auth(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    const char *why = "no token secret configured";
    pl_token_rules_t rules = token_rules(p);
    if (p->secret == NULL ||
        pl_auth_check(cmd->token, &rules, (int64_t)(pl_now_ms() / 1000), &s->auth, &why) < 0) {
        chat_reply_error(s, cmd->has_id, cmd->id, "unauthorized", "invalid token");
        pl_conn_close(s->c, PL_WS_CLOSE_POLICY, "auth failed: %s", why);
        return;
    }
    s->authed = 1;
    s->c->user = s->auth.user;
    arm_expiry(s);
    unauth_del(p, s);
    pl_conn_set_max_message(s->c, (size_t)p->w->cfg->max_message_size, -1);
    if (s->auth_timer)
        evtimer_del(s->auth_timer);
    uint8_t rnd[16];
    pl_random_bytes(rnd, sizeof(rnd));
    pl_hex(rnd, sizeof(rnd), s->sid);
    char ch[PL_KEY_MAX];
    pl_key_user(ch, s->auth.user);
    if (pl_user_add(&p->rooms, s->auth.user, s->c)) {
        /* the user's first connection here: its shared command bucket */
        pl_ratelimit_init(&pl_user_get(&p->rooms, s->auth.user)->rl, p->w->cfg->rate_limit,
                          p->w->cfg->rate_burst, pl_mono_ms());
        pl_bus_subscribe(p->bus, ch);
    }
    pl_conn_log(s->c, PL_LOG_DEBUG, "authenticated\tsession=%s", s->sid);
    s->auth_has_id = cmd->has_id;
    s->auth_id = cmd->id;
    s->auth_wait = !pl_bus_subscribed(p->bus, ch);
    chat_uconn_add(p, s); /* may set uconn_wait */
    if (!s->auth_wait && !s->uconn_wait) {
        chat_auth_reply(s);
        return;
    }
    /* Hold the reply until DMs can reach this connection, so a DM sent
     * right after our reply is never lost, and until the user's
     * connections are counted; at most 2 s. */
    struct timeval tv = {2, 0};
    evtimer_add(s->auth_timer, &tv);
}

/* refresh: a newer token for the same user. A bad one is answered and
 * changes nothing (the old token keeps the session until its exp); a good
 * one replaces the claims, re-arms the expiry timer and leaves every room
 * the new rooms claim no longer allows (the leave path: presence, and the
 * room's stream closes with its last local member), each with a `left`
 * event before the reply. */
static void cmd_refresh(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_auth_t a;
    const char *why = "no token secret configured";
    pl_token_rules_t rules = token_rules(p);
    if (p->secret == NULL ||
        pl_auth_check(cmd->token, &rules, (int64_t)(pl_now_ms() / 1000), &a, &why) < 0) {
        pl_conn_log(s->c, PL_LOG_INFO, "refresh refused: %s", why);
        chat_reply_error(s, cmd->has_id, cmd->id, "unauthorized", "invalid token");
        return;
    }
    if (strcmp(a.user, s->auth.user) != 0) {
        pl_conn_log(s->c, PL_LOG_INFO, "refresh refused: token for another user\tsub=%s", a.user);
        pl_auth_free(&a);
        chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "token is for another user");
        return;
    }
    /* same user: s->auth.user (c->user, members' user) keeps its bytes */
    pl_auth_t old = s->auth;
    s->auth = a;
    pl_auth_free(&old);
    arm_expiry(s);
    pl_conn_log(s->c, PL_LOG_DEBUG, "token refreshed\texp=%" PRId64, s->auth.exp);
    pl_member_t *m = s->rooms.head;
    while (m != NULL) {
        pl_member_t *next = m->cnext; /* leaving frees m, never another of ours */
        if (!pl_auth_room_allowed(&s->auth, m->room->name)) {
            json_t *ev = json_object();
            json_object_set_new(ev, "ev", json_string("left"));
            json_object_set_new(ev, "room", json_string(m->room->name));
            json_object_set_new(ev, "reason", json_string("forbidden"));
            pl_conn_log(s->c, PL_LOG_DEBUG, "left\troom=%s reason=forbidden", m->room->name);
            chat_send_json(s, ev);
            chat_leave_member(p, s, m);
        }
        m = next;
    }
    json_t *o = chat_ok_obj(cmd->has_id, cmd->id);
    json_object_set_new(o, "exp", json_integer(s->auth.exp));
    chat_send_json(s, o);
}

/* ===================================================================== */
/* the seam: the chat module's hooks (ops.h)                              */

/* This process's worker's chat state, from worker_start to worker_stop (a
 * worker is a process, like metrics above). */
static proto_t *worker_proto;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proto_t *p = arg;
    chat_uconn_refresh(p);
    chat_dm_sweep(p);
}

static int on_worker_start(pl_worker_t *w)
{
    /* every map made from here on (room, user and DM indexes: client
     * chosen names) hashes with this process's own secret seed */
    pl_map_reseed();
    proto_t *p = pl_xcalloc(1, sizeof(*p));
    p->w = w;
    p->max_unauth =
        w->cfg->max_unauthenticated > 0 ? (size_t)w->cfg->max_unauthenticated : w->max_conns / 4;
    if (p->max_unauth == 0)
        p->max_unauth = 1;
    metrics = w->metrics;
    for (int l = 0; l < CHAT_NLIMITS; l++)
        limit_ids[l] = pl_metrics_limit_register(limit_names[l]);
    if (metrics) {
        chat_m_messages =
            pl_metrics_register(metrics, "parley_chat_messages_total", "counter",
                                "Chat messages stored (send and dm, cid repeats excluded).");
        chat_m_deliveries = pl_metrics_register(metrics, "parley_chat_deliveries_total", "counter",
                                                "Chat msg events queued to client connections.");
        chat_m_unavailable =
            pl_metrics_register(metrics, "parley_chat_unavailable_total", "counter",
                                "Chat commands answered unavailable (Redis down or lost).");
        chat_m_redis_errors =
            pl_metrics_register(metrics, "parley_chat_redis_errors_total", "counter",
                                "Error replies from Redis to chat commands.");
        chat_m_seq_regressions = pl_metrics_register(
            metrics, "parley_seq_regressions_total", "counter",
            "Live messages under a seq already delivered (Redis lost a seq); delivered anyway.");
        chat_m_dm_streams =
            pl_metrics_register(metrics, "parley_chat_dm_streams", "gauge",
                                "DM streams (per local user and dm room) this worker holds.");
    }
    chat_presence_start();
    chat_refill_start(metrics);
    snprintf(p->origin, sizeof(p->origin), "%.120s.%d", w->node_id, (int)getpid());
    if (pl_auth_load_secret(w->cfg, &p->secret, &p->secret_len) < 0) {
        /* A named secret file that cannot be read is a configuration that
         * cannot work: fail the start so the master exits 2 instead of
         * serving a gateway on which every auth fails. */
        if (w->cfg->token_secret_file && *w->cfg->token_secret_file) {
            pl_log_error("token_secret_file cannot be read: the worker cannot run\tfile=%s",
                         w->cfg->token_secret_file);
            free(p);
            return -1;
        }
        pl_log_error("no token secret (token_secret or token_secret_file): every auth will fail");
    }
    pl_rooms_init(&p->rooms);
    pl_map_init(&p->dms);
    char control[PL_KEY_MAX];
    pl_key_node(control, w->node_id, w->index);
    pl_bus_handlers_t h = {
        .arg = p,
        .on_message = chat_on_bus_message,
        .on_subscribed = chat_on_bus_subscribed,
        .on_sub_down = chat_on_bus_sub_down,
        .on_cmd_up = chat_on_bus_cmd_up,
        .on_queue_full = chat_on_bus_queue_full,
    };
    p->bus = pl_bus_new(w->base, w->cfg->redis_url, control, &h);
    if (p->bus == NULL) {
        pl_log_error("bad redis_url\turl=%s", w->cfg->redis_url);
        pl_rooms_free(&p->rooms);
        free(p->secret);
        free(p);
        return -1;
    }
    pl_bus_set_queue_max(p->bus, (unsigned)w->cfg->redis_queue_max);
    pl_map_init(&p->sends);
    pl_map_init(&p->guards);
    p->db = w->cfg->mysql_url[0] ? pl_db_new(w->base, w->cfg->mysql_url, (int)w->cfg->mysql_pool)
                                 : NULL;
    p->refetch = evtimer_new(w->base, chat_on_refetch, p);
    p->beat = event_new(w->base, -1, EV_PERSIST, chat_on_beat, p);
    struct timeval tv = {PRESENCE_BEAT_MS / 1000, 0};
    evtimer_add(p->beat, &tv);
    chat_archstat_start(p);
    p->tick = event_new(w->base, -1, EV_PERSIST, on_tick, p);
    struct timeval ttv = {CHAT_TICK_MS / 1000, 0};
    evtimer_add(p->tick, &ttv);
    worker_proto = p;
    return 0;
}

/* No worker_drain: the transport closes connections with 1001; each leaves
 * its rooms in on_closed. */

static void on_worker_stop(pl_worker_t *w)
{
    proto_t *p = worker_proto;
    if (p == NULL)
        return;
    chat_archstat_stop();
    event_free(p->beat);
    event_free(p->tick);
    event_free(p->refetch);
    p->refetch = NULL;
    chat_refill_stop();
    /* pending floor and history lookups end with PL_DB_ECLOSED (failing
     * their sends/requests), then Redis callbacks run with NULL */
    pl_db_free(p->db);
    p->db = NULL;
    pl_bus_free(p->bus); /* pending callbacks run with NULL and free their requests */
    chat_guard_stop(p);
    {
        size_t k;
        for (pl_map_entry_t *e = pl_map_first(&p->sends, &k); e; e = pl_map_next(&p->sends, e, &k))
            free(e->val); /* only counters can be left: every queued send was answered */
        pl_map_clear(&p->sends);
    }
    chat_dm_free_all(p);
    pl_rooms_free(&p->rooms);
    free(p->secret);
    free(p);
    worker_proto = NULL;
}

static void on_open(pl_conn_t *c)
{
    proto_t *p = worker_proto;
    session_t *s = pl_xcalloc(1, sizeof(*s));
    s->c = c;
    s->p = p;
    s->refs = 1;
    c->session = s;
    /* until auth: small messages only, and a place on the unauthenticated list */
    int64_t pre = c->w->cfg->max_auth_message_size < c->w->cfg->max_message_size
                      ? c->w->cfg->max_auth_message_size
                      : c->w->cfg->max_message_size;
    pl_conn_set_max_message(c, (size_t)pre, limit_ids[CHAT_LIMIT_AUTH_MESSAGE]);
    unauth_add(p, s);
    s->auth_timer = evtimer_new(c->w->base, on_auth_timeout, s);
    int64_t ms = c->w->cfg->auth_timeout;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->auth_timer, &tv);
    s->last_cmd_ms = pl_mono_ms();
    if (c->w->cfg->idle_timeout > 0) {
        s->idle_timer = evtimer_new(c->w->base, on_idle, s);
        arm_idle(s, c->w->cfg->idle_timeout);
    }
}

static void on_message(pl_conn_t *c, const uint8_t *text, size_t len)
{
    session_t *s = c->session;
    proto_t *p = worker_proto;
    if (s == NULL)
        return;
    s->last_cmd_ms = pl_mono_ms(); /* idle_timeout: any frame of the protocol counts */
    pl_cmd_t cmd;
    int rc = pl_cmd_parse((const char *)text, len, (size_t)c->w->cfg->max_text_size, &cmd);
    if (!s->authed) {
        if (rc < 0 || cmd.op != OP_AUTH) {
            chat_reply_error(s, cmd.has_id, cmd.id, "unauthorized", "the first frame must be auth");
            pl_conn_close(c, PL_WS_CLOSE_POLICY, "first frame was not a valid auth");
        } else {
            cmd_auth(p, s, &cmd);
        }
        pl_cmd_free(&cmd);
        return;
    }
    if (token_expired(s)) {
        pl_cmd_free(&cmd);
        pl_conn_close_reason(c, CLOSE_TOKEN_EXPIRED, "token expired",
                             "token expired (command after exp)\texp=%" PRId64, s->auth.exp);
        return;
    }
    /* one bucket per user on this worker: more sockets buy no more commands */
    pl_user_conns_t *u = pl_user_get(&p->rooms, s->auth.user);
    assert(u != NULL);
    switch (pl_ratelimit_take(&u->rl, &s->rl_rejected, pl_mono_ms())) {
    case PL_RATE_ALLOW:
        break;
    case PL_RATE_REJECT:
        chat_limit_hit(s, CHAT_LIMIT_RATE, "");
        chat_reply_error(s, cmd.has_id, cmd.id, "rate_limited", "slow down");
        pl_cmd_free(&cmd);
        return;
    case PL_RATE_ABUSIVE:
        pl_cmd_free(&cmd);
        pl_conn_close(c, PL_WS_CLOSE_POLICY, "rate limit ignored\trejected=%u", s->rl_rejected);
        return;
    }
    if (rc < 0) {
        chat_reply_error(s, cmd.has_id, cmd.id, cmd.err, cmd.msg);
        pl_cmd_free(&cmd);
        return;
    }
    switch (cmd.op) {
    case OP_AUTH:
        chat_reply_error(s, cmd.has_id, cmd.id, "bad_request", "already authenticated");
        break;
    case OP_JOIN:
        chat_cmd_join(p, s, &cmd);
        break;
    case OP_LEAVE:
        chat_cmd_leave(p, s, &cmd);
        break;
    case OP_SEND:
        chat_cmd_send(p, s, &cmd);
        break;
    case OP_DM:
        chat_cmd_dm(p, s, &cmd);
        break;
    case OP_HISTORY:
        chat_cmd_history(p, s, &cmd);
        break;
    case OP_PRESENCE:
        chat_cmd_presence(p, s, &cmd);
        break;
    case OP_TYPING:
        chat_cmd_typing(p, s, &cmd);
        break;
    case OP_REFRESH:
        cmd_refresh(p, s, &cmd);
        break;
    }
    pl_cmd_free(&cmd);
}

static void on_closed(pl_conn_t *c)
{
    session_t *s = c->session;
    proto_t *p = worker_proto;
    if (s == NULL)
        return;
    unauth_del(p, s);
    while (s->rooms.head)
        chat_leave_member(p, s, s->rooms.head);
    if (s->authed)
        chat_uconn_del(p, s);
    if (s->authed && pl_user_del(&p->rooms, s->auth.user, c)) {
        char ch[PL_KEY_MAX];
        pl_key_user(ch, s->auth.user);
        pl_bus_unsubscribe(p->bus, ch);
        chat_dm_forget(p, s->auth.user);
    }
    if (s->auth_timer)
        event_free(s->auth_timer);
    s->auth_timer = NULL;
    if (s->exp_timer)
        event_free(s->exp_timer);
    s->exp_timer = NULL;
    if (s->idle_timer)
        event_free(s->idle_timer);
    s->idle_timer = NULL;
    s->c = NULL;
    c->session = NULL;
    c->user = NULL;
    session_unref(s);
}

static const pl_ws_ops_t chat_ops = {
    .name = "chat",
    .worker_start = on_worker_start,
    .worker_stop = on_worker_stop,
    .open = on_open,
    .message = on_message,
    .closed = on_closed, /* no binary: the chat path takes text only (1003) */
};

int pl_chat_register(void)
{
    return pl_ops_register("/ws", &chat_ops);
}
