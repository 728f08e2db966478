/*
 * Chat join and leave (docs/protocol.md 1.3): membership, the join reply
 * once the room stream is ready, and recovery of the messages after a
 * client's `since`.
 */
#include "auth.h"
#include "conn.h"
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
/* join / leave                                                           */

void chat_leave_member(proto_t *p, session_t *s, pl_member_t *m)
{
    pl_room_t *r = m->room;
    int last_user, empty;
    pl_room_leave(m, &s->rooms, &last_user, &empty);
    if (last_user)
        chat_presence_change(p, "leave", r->name, s->auth.user, s->c ? s->c->id : 0);
    if (empty) {
        char ch[PL_KEY_MAX];
        chat_room_channel(ch, r->name);
        pl_bus_unsubscribe(p->bus, ch);
        chat_fail_waiters(p, r, "not_joined", "left before the join completed", 0);
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
            chat_count(chat_m_deliveries, 1);
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
        chat_req_free(q);
        return;
    }
    if (status < 0) {
        m->recovering = 0;
        chat_leave_member(p, s, m);
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
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
        chat_count(chat_m_deliveries, 1);
        m->cursor = h->seq;
        expect = h->seq + 1;
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

/* The room is READY: answer the join (after recovery when since given). */
void chat_join_ready(proto_t *p, req_t *q)
{
    session_t *s = q->s;
    pl_room_t *r = pl_room_get(&p->rooms, q->room);
    pl_member_t *m = s->c ? pl_room_member(s->rooms, q->room) : NULL;
    if (m == NULL || r == NULL) {
        chat_req_error(q, "not_joined", "left before the join completed");
        chat_req_free(q);
        return;
    }
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
    if (pl_history_range(p->bus, q->room, q->since, q->upto, on_recover, q) < 0) {
        m->recovering = 0;
        chat_leave_member(p, s, m);
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
    }
}

void chat_cmd_join(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    pl_member_t *old = pl_room_member(s->rooms, cmd->room);
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
    if (!pl_bus_ready(p->bus) || !pl_bus_sub_ready(p->bus)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "unavailable", "redis unavailable");
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
        chat_presence_change(p, "join", r->name, s->auth.user, s->c->id);
    pl_conn_log(s->c, PL_LOG_DEBUG, "join\troom=%s since=%" PRId64 " first=%d", r->name,
                cmd->has_since ? cmd->since : -1, first_conn);
    req_t *q = chat_req_new(s, cmd);
    q->has_since = cmd->has_since;
    q->since = cmd->since;
    q->room_gen = r->gen;
    if (first_conn) {
        char ch[PL_KEY_MAX];
        chat_room_channel(ch, r->name);
        pl_bus_subscribe(p->bus, ch);
        if (pl_bus_subscribed(p->bus, ch))
            r->subscribed = 1;
    }
    if (r->stream == ROOM_READY) {
        chat_join_ready(p, q);
        return;
    }
    q->next = r->waiters;
    r->waiters = q;
    if (r->subscribed && !r->fetching)
        chat_start_fetch(p, r);
}

void chat_cmd_leave(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_member_t *m = pl_room_member(s->rooms, cmd->room);
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
