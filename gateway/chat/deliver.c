/*
 * Chat delivery from the bus (docs/protocol.md 2, 3.1): the pl_bus
 * callbacks. Each published payload is decoded (envelope, channel name)
 * and routed: room messages and DMs into the stream machine (stream.c),
 * which keeps them in seq order; presence and typing events straight to
 * the room's local members; other user-channel events to the user's
 * connections. Subscription and link changes are passed on likewise.
 *
 * Kept apart from stream.c so that the machine deals in rooms, seqs and
 * frames only, and the wire formats stay here.
 */
#include "chat.h"
#include "envelope.h"
#include "keys.h"
#include "log.h"
#include "script.h"
#include "util.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

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
    if (pl_key_parse_user(channel, chlen, name) == 0) {
        pl_frame_t *f = pl_frame_new(PL_WS_TEXT, e.json, e.json_len);
        if (e.kind == PL_ENV_MSG && e.room_len <= PL_ROOM_MAX)
            chat_stream_dm(p, name, e.room, e.room_len, e.seq, f, origin);
        else
            chat_user_fanout(p, name, f, origin, 0);
        pl_frame_unref(f);
        return;
    }
    if (pl_key_parse_room_channel(channel, chlen, name) < 0)
        return;
    pl_room_t *r = pl_room_get(&p->rooms, name);
    if (r == NULL || r->nmembers == 0)
        return;
    pl_frame_t *f = pl_frame_new(PL_WS_TEXT, e.json, e.json_len);
    if (e.kind == PL_ENV_MSG)
        chat_stream_msg(p, r, e.seq, f, origin);
    else
        fanout_event(r, f, origin);
    pl_frame_unref(f);
}

void chat_on_bus_subscribed(void *arg, const char *channel)
{
    proto_t *p = arg;
    char name[PL_ROOM_MAX + 1];
    if (pl_key_parse_user(channel, strlen(channel), name) == 0) {
        const pl_user_conns_t *u = pl_user_get(&p->rooms, name);
        for (size_t i = 0; u && i < u->n; i++) {
            session_t *s = ((pl_conn_t *)u->conns[i])->session;
            if (s && s->auth_wait)
                chat_auth_reply(s);
        }
        chat_stream_user_subscribed(p, name);
        return;
    }
    if (pl_key_parse_room_channel(channel, strlen(channel), name) == 0)
        chat_stream_subscribed(p, name);
}

void chat_on_bus_sub_down(void *arg)
{
    chat_stream_sub_down(arg);
}

void chat_on_bus_cmd_up(void *arg)
{
    proto_t *p = arg;
    pl_script_load_all(p->bus); /* ahead of every script call on this link */
    chat_guard_cmd_up(p);       /* then the seq raises, ahead of any send */
    chat_on_beat(-1, 0, p);     /* a restarted Redis may have lost presence: refresh now */
    chat_stream_refetch(p);
}

void chat_on_bus_queue_full(void *arg)
{
    (void)arg;
    chat_limit(chat_l_redis_queue);
}
