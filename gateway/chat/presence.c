/*
 * Chat presence and typing (docs/protocol.md 1.5, 3.5): the presence
 * script calls for join/leave/heartbeat/list and the typing broadcast.
 * The script keeps every call O(log n) per member in Redis and silences
 * rooms above presence_events_max users; the list is capped at
 * PRESENCE_LIST_MAX users plus the room's total count.
 */
#include "auth.h"
#include "envelope.h"
#include "script.h"
#include "chat.h"
#include "history.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PL_MEMBER_MAX (PL_USER_MAX + 160 + 16) /* "user|origin|worker" */
#define PRESENCE_LIST_MAX 1000                 /* users in one presence reply */

/* parley_limit_rejections_total{limit="presence_events_max"}: join/leave
 * events the script left out because the room is above the limit. */
static int limit_events = -1;

void chat_presence_start(void)
{
    limit_events = pl_metrics_limit_register("presence_events_max");
}

static void count_quiet(proto_t *p, long long n)
{
    for (long long i = 0; i < n && p->w->metrics; i++)
        pl_metrics_limit(p->w->metrics, limit_events);
}

/* ===================================================================== */
/* presence                                                               */

static void on_ignore(void *arg, redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_warn("redis command failed\terror=\"%s\"", r->str);
    }
}

/* Reply of join/leave/refresh: the number of events left out. */
static void on_presence_done(void *arg, redisReply *r)
{
    proto_t *p = arg;
    if (r && r->type == REDIS_REPLY_INTEGER)
        count_quiet(p, r->integer);
    else
        on_ignore(NULL, r);
}

static void presence_member(proto_t *p, const char *user, char *out, size_t n)
{
    snprintf(out, n, "%s|%s|%d", user, p->origin, p->w->index);
}

/* Runs the presence script; extra are the op's arguments. */
static int presence_call(proto_t *p, const char *op, const char *room, uint64_t conn, int nextra,
                         const char **extra, pl_bus_reply_fn fn, void *arg)
{
    char key[PL_KEY_MAX], ukey[PL_KEY_MAX], kseq[PL_KEY_MAX], ch[PL_KEY_MAX], window[16],
        worker[16], cid[24], ttl[16], emax[24];
    pl_key_presence(key, room);
    pl_key_presence_users(ukey, room);
    pl_key_seq(kseq, room); /* join and refresh keep it alive (seq guard) */
    pl_key_room_channel(ch, room);
    snprintf(window, sizeof(window), "%d", PRESENCE_WINDOW_MS);
    snprintf(worker, sizeof(worker), "%d", p->w->index);
    snprintf(cid, sizeof(cid), "%" PRIu64, conn);
    snprintf(ttl, sizeof(ttl), "%d", PRESENCE_KEY_TTL_MS);
    snprintf(emax, sizeof(emax), "%" PRId64, p->w->cfg->presence_events_max);
    char *rj = chat_json_literal(room, strlen(room));
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
    args[PRES_EV_MAX] = emax;
    for (int i = 0; i < nextra && i < 64; i++)
        args[PRES_NARGS + i] = extra[i];
    const char *keys[] = {key, ukey, kseq};
    int rc = pl_script_call(p->bus, PL_SCRIPT_PRESENCE, 3, keys,
                            PRES_NARGS + (nextra < 64 ? nextra : 64), args, NULL, fn, arg);
    free(rj);
    return rc;
}

void chat_presence_change(proto_t *p, const char *op, const char *room, const char *user,
                          uint64_t conn)
{
    char member[PL_MEMBER_MAX];
    presence_member(p, user, member, sizeof(member));
    const char *extra[] = {user, member};
    presence_call(p, op, room, conn, 2, extra, on_presence_done, p);
}

/* Heartbeat: refresh every local member of every room (and let the
 * script prune and announce members whose node stopped refreshing). */
void chat_on_beat(evutil_socket_t fd, short what, void *arg)
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
            presence_call(p, "refresh", r->name, 0, (int)n, extra, on_presence_done, p);
            free(members);
        }
    }
    chat_guard_keep_dms(p); /* rooms' seq keys are kept by the refresh above */
}

static int may_read(session_t *s, const char *room)
{
    return pl_room_member(&s->rooms, room) != NULL || pl_auth_room_allowed(&s->auth, room);
}

/* Reply {count, users, left out}: users are distinct (the script dedupes)
 * and at most PRESENCE_LIST_MAX, so this is linear in the reply. */
static void on_presence_list(void *arg, redisReply *r)
{
    req_t *q = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            pl_log_error("presence script failed\troom=%s error=\"%s\"", q->room, r->str);
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
        return;
    }
    if (r->elements > 2 && r->element[2]->type == REDIS_REPLY_INTEGER)
        count_quiet(q->s->p, r->element[2]->integer);
    redisReply *list = r->element[1];
    json_t *users = json_array();
    for (size_t i = 0; i < list->elements && i < PRESENCE_LIST_MAX; i++) {
        redisReply *u = list->element[i];
        if (u->type == REDIS_REPLY_STRING)
            json_array_append_new(users, json_stringn(u->str, u->len));
    }
    json_t *o = chat_ok_obj(q->has_id, q->id);
    json_object_set_new(o, "room", json_string(q->room));
    json_object_set_new(o, "users", users);
    json_object_set_new(o, "count", json_integer(r->element[0]->integer));
    chat_send_json(q->s, o);
    chat_req_free(q);
}

void chat_cmd_presence(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!may_read(s, cmd->room)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    req_t *q = chat_req_new(s, cmd);
    char max[16];
    snprintf(max, sizeof(max), "%d", PRESENCE_LIST_MAX);
    const char *extra[] = {max};
    if (presence_call(p, "list", cmd->room, 0, 1, extra, on_presence_list, q) < 0) {
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
    }
}

void chat_cmd_typing(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_member_t *m = pl_room_member(&s->rooms, cmd->room);
    if (m == NULL) {
        chat_reply_error(s, cmd->has_id, cmd->id, "not_joined", "join the room first");
        return;
    }
    /* typing_interval: once per user and room (any of its connections on
     * this worker); the rest are dropped silently, as the protocol allows */
    if (!pl_room_typing_allow(m->room, s->auth.user, pl_mono_ms(),
                              (uint64_t)p->w->cfg->typing_interval)) {
        chat_limit_hit(s, CHAT_LIMIT_TYPING, "");
        return;
    }
    char ch[PL_KEY_MAX];
    pl_key_room_channel(ch, cmd->room);
    char *rj = chat_json_literal(cmd->room, strlen(cmd->room));
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
        chat_reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
}
