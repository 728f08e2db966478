/*
 * Chat join and leave (docs/protocol.md 1.3): the commands and membership
 * (the room index, presence). Where a joined member's stream starts (the
 * join reply, recovery after `since`) is the stream machine's (stream.c).
 */
#include "auth.h"
#include "conn.h"
#include "chat.h"
#include "log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

void chat_leave_member(proto_t *p, session_t *s, pl_member_t *m)
{
    pl_room_t *r = m->room;
    int last_user, empty;
    pl_room_leave(m, &s->rooms, &last_user, &empty);
    if (last_user)
        chat_presence_change(p, "leave", r->name, s->auth.user, s->c ? s->c->id : 0);
    if (empty)
        chat_stream_close(p, r);
}

void chat_cmd_join(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    pl_member_t *old = pl_room_member(&s->rooms, cmd->room);
    if (old != NULL && !old->recovering && !cmd->has_since) {
        json_t *o = chat_ok_obj(cmd->has_id, cmd->id);
        json_object_set_new(o, "room", json_string(cmd->room));
        json_object_set_new(o, "seq", json_integer(old->cursor));
        chat_send_json(s, o);
        return;
    }
    if (old != NULL) {
        chat_reply_error(s, cmd->has_id, cmd->id, "bad_request", "already joined");
        return;
    }
    /* each room is a subscription, a presence entry and heartbeat work */
    if (s->rooms.n >= (size_t)p->w->cfg->max_rooms_per_connection) {
        char detail[48];
        snprintf(detail, sizeof(detail), " max=%zu", s->rooms.n);
        chat_limit_hit(s, CHAT_LIMIT_ROOMS, detail);
        chat_reply_error(s, cmd->has_id, cmd->id, "too_many_rooms",
                         "max_rooms_per_connection reached: leave a room first");
        return;
    }
    if (!pl_bus_ready(p->bus) || !pl_bus_sub_ready(p->bus)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
        return;
    }
    int first_conn, first_user;
    pl_member_t *m = pl_room_join(&p->rooms, cmd->room, s->c, s->c->id, s->auth.user, &s->rooms,
                                  &first_conn, &first_user);
    pl_room_t *r = m->room;
    if (first_user)
        chat_presence_change(p, "join", r->name, s->auth.user, s->c->id);
    pl_conn_log(s->c, PL_LOG_DEBUG, "join\troom=%s since=%" PRId64 " first=%d", r->name,
                cmd->has_since ? cmd->since : -1, first_conn);
    req_t *q = chat_req_new(s, cmd);
    q->has_since = cmd->has_since;
    q->since = cmd->since;
    chat_stream_join(p, m, q, first_conn); /* answers now or once the room is READY */
}

void chat_cmd_leave(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_member_t *m = pl_room_member(&s->rooms, cmd->room);
    if (m == NULL) {
        chat_reply_error(s, cmd->has_id, cmd->id, "not_joined", "not joined to this room");
        return;
    }
    pl_conn_log(s->c, PL_LOG_DEBUG, "leave\troom=%s", cmd->room);
    chat_leave_member(p, s, m);
    json_t *o = chat_ok_obj(cmd->has_id, cmd->id);
    json_object_set_new(o, "room", json_string(cmd->room));
    chat_send_json(s, o);
}
