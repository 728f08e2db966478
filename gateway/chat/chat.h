/*
 * The chat layer's internal header: what cmd.c (parsing, sessions,
 * replies, auth, the worker seam) and the other files of gateway/chat/
 * (one concern each: stream, deliver, join, send, history, presence)
 * share. Not for use outside the chat layer; docs/protocol.md is the
 * reference for behaviour.
 */
#ifndef PL_CHAT_H
#define PL_CHAT_H

#include "auth.h"
#include "bus.h"
#include "cmd.h"
#include "conn.h"
#include "db.h"
#include "history.h"
#include "metrics.h"
#include "ratelimit.h"
#include "room.h"
#include "seqcheck.h"
#include "worker.h"

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PRESENCE_BEAT_MS 15000   /* each worker refreshes its members this often */
#define PRESENCE_WINDOW_MS 45000 /* a member not refreshed for this long is gone */
#define PRESENCE_KEY_TTL_MS 120000

#define CHAT_TICK_MS 15000 /* housekeeping: user connection counts, idle DM streams */
#define UCONN_TTL_MS                                                                               \
    45000 /* an entry in a user's connection set not refreshed for this                            \
           * long is gone (a dead node's connections age out) */

/* The limits the chat layer enforces (docs/ops.md "Limits"): each hit is
 * counted in parley_limit_rejections_total{limit="<its config key>"} and
 * logged once per connection (chat_limit_hit). */
enum chat_user_limit {
    CHAT_LIMIT_UNAUTHENTICATED,  /* "max_unauthenticated": oldest unauthenticated closed */
    CHAT_LIMIT_AUTH_MESSAGE,     /* "max_auth_message_size": counted by the transport (1009) */
    CHAT_LIMIT_USER_CONNECTIONS, /* "max_user_connections": auth refused */
    CHAT_LIMIT_RATE,             /* "rate_limit": command answered rate_limited */
    CHAT_LIMIT_TYPING,           /* "typing_interval": typing dropped */
    CHAT_LIMIT_ROOMS,            /* "max_rooms_per_connection": join refused */
    CHAT_NLIMITS
};

struct session;

/* The worker's chat state (worker_proto in cmd.c). */
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
    pl_map_t dms;          /* user -> its DM streams (stream.c's dmuser_t): DM order per
                            * local user and dm room */
    struct event *refetch; /* retries room fetches that failed (Redis LOADING, lost link) */
    pl_db_t *db;           /* MySQL pool (older history, seq floor); NULL = mysql_url off */
    pl_map_t sends;        /* room -> sendorder_t: sends whose seq may need the floor */
    /* guard.c: room -> guard_t while the room's seq is raised after a
     * reconnect, and the timer retrying failed raises (made on first use) */
    pl_map_t guards;
    struct event *guard_retry;
    struct event *tick; /* housekeeping, every CHAT_TICK_MS */
    /* connections not authenticated yet, oldest first (max_unauthenticated) */
    struct session *unauth_head, *unauth_tail;
    size_t nunauth;
    size_t max_unauth; /* max_unauthenticated in effect */
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
    int uconn_wait; /* authed, reply held until max_user_connections is checked */
    char sid[33];   /* session id, 128 random bits in hex */
    struct event *auth_timer;
    struct event *exp_timer;  /* closes 4001 at auth.exp; re-armed by refresh (cmd.c) */
    struct event *idle_timer; /* idle_timeout: closes 1000 "idle" (cmd.c), NULL when off */
    uint64_t last_cmd_ms;     /* monotonic ms of the last command frame */
    uint32_t rl_rejected;     /* consecutive rate_limited replies (the bucket is the user's,
                                 pl_user_conns_t.rl) */
    unsigned limits_logged;   /* bit 1 << enum chat_user_limit: that limit's line was written */
    pl_conn_rooms_t rooms;    /* conn -> rooms */
    struct session *unext;    /* on the unauthenticated list (proto_t.unauth_head) */
    struct session *uprev;
    int on_unauth; /* on that list */
} session_t;

/* One command waiting for Redis. */
typedef struct req {
    session_t *s;
    int has_id;
    int64_t id;
    pl_op_t op;
    char room[PL_ROOM_MAX + 1];
    struct req *next; /* join: on the room's waiter list */
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

typedef struct dmstream {
    int64_t last;  /* last seq delivered to this user's connections (0 = none yet) */
    int64_t acked; /* highest seq a dm of this user from this worker got (seq floor hint) */
    int fetching;  /* catch-up in flight: live DMs queue in pending */
    int dropped;   /* pending overflowed (stream_queue_max): refetch, never accept the gap */
    pl_mqueue_t pending;
    uint64_t used_ms;               /* monotonic ms of its last use (idle expiry) */
    struct dmstream *lprev, *lnext; /* the user's streams, most recently used first */
    char user[PL_USER_MAX + 1];
    char room[PL_ROOM_MAX + 1];
    /* recent (seq, msg_id) delivered: a duplicate or a regression */
    pl_seqcheck_t seen;
} dmstream_t;

/* ---- cmd.c: metrics, requests, replies ---- */

/* Series ids in the worker's metrics block (-1 until registered). */
extern int chat_m_messages;     /* messages stored (send/dm, not cid repeats) */
extern int chat_m_deliveries;   /* msg events queued to client connections */
extern int chat_m_unavailable;  /* commands answered unavailable */
extern int chat_m_redis_errors; /* error replies from Redis */
/* new messages under seqs already delivered (stream.c) */
extern int chat_m_seq_regressions;
extern int chat_m_dm_streams; /* gauge: DM streams held (stream.c) */
void chat_count(int id, int64_t n);
/* Counts one refusal in parley_limit_rejections_total (id from
 * pl_metrics_limit_register; -1 is a no-op). */
void chat_limit(int id);
/* A limit was hit on s: counts it; logs it unless this connection already
 * logged that limit (detail: extra key=value pairs, may be ""). */
void chat_limit_hit(session_t *s, enum chat_user_limit l, const char *detail);

/* A request holds a session reference until chat_req_free. */
req_t *chat_req_new(session_t *s, const pl_cmd_t *cmd);
void chat_req_free(req_t *q);
/* Sends o (consumed) as one text frame; dropped when the connection is gone. */
void chat_send_json(session_t *s, json_t *o);
json_t *chat_ok_obj(int has_id, int64_t id);
void chat_reply_error(session_t *s, int has_id, int64_t id, const char *code, const char *msg);
void chat_req_error(req_t *q, const char *code, const char *msg);
/* A JSON string literal for s (with quotes), malloc'd. */
char *chat_json_literal(const char *s, size_t n);
/* Sends the held auth reply (user channel subscribed or timed out). */
void chat_auth_reply(session_t *s);

/* ---- stream.c: the room-stream machine ----
 *
 * On this worker each room is a stream handed to its local members
 * strictly in seq order, each seq once (pl_room_t.last_seq), and so is
 * each local user's dm room (dmstream_t.last). Room states
 * (pl_room_t.stream, room.h):
 *
 *   ROOM_WAIT   live messages queue on r->pending, joins on r->waiters.
 *               A fetch (r->fetching) runs once the room channel's
 *               subscription is confirmed (r->subscribed): GET the seq key
 *               on first use (r->have_base), else the recent zset after
 *               last_seq.
 *   ROOM_READY  a live message with last_seq + 1 goes out at once; joins
 *               are answered at once.
 *
 * Transitions:
 *   first local member joins      new room in WAIT, subscribe its channel
 *   subscription confirmed        -> WAIT, fetch (base seq or catch-up)
 *   fetch done, pending in order  WAIT -> READY, waiters answered in arrival order
 *   gap at the front of pending   stays WAIT, fetch again from last_seq (a
 *                                 catch-up that cannot fill it accepts it)
 *   live message past a gap       READY -> WAIT, queued, fetch
 *   live message <= last_seq      a copy: dropped; a new message under
 *                                 a used seq (seqcheck.h): a regression,
 *                                 delivered to every member, counted, and
 *                                 Redis's seq raised back (guard.c)
 *   fetch failed / Redis down     stays WAIT, waiters fail "unavailable" (and
 *                                 leave), the refetch timer retries in 250 ms
 *   subscription link lost        every room -> WAIT, unsubscribed, waiters fail
 *   command link up, refetch      subscribed WAIT rooms not fetching fetch
 *   last local member leaves      unsubscribe, waiters fail "not_joined", dropped
 *
 * A member is `recovering` from its join until the join is answered: live
 * messages queue on it (m->q). A join with `since` behind the room is first
 * served from the recent zset up to the room's last_seq at that moment,
 * then the queue is released past its cursor.
 *
 * DM streams (per local user and dm room, fed by the user's channel): a
 * DM past a gap, or while a catch-up runs, queues on d->pending and the
 * gap is fetched from the dm room's recent zset; a resubscribed user
 * channel fetches too; Redis down releases what is queued, gap and all.
 */

/* A join q of member m (already in the room index) enters the stream:
 * subscribes the room channel for the room's first local member
 * (first_conn), answers q now when the room is READY, else queues it and
 * starts the fetch. Takes q. */
void chat_stream_join(proto_t *p, pl_member_t *m, req_t *q, int first_conn);
/* The room lost its last local member: unsubscribe, fail its waiters,
 * drop it (r is gone after). */
void chat_stream_close(proto_t *p, pl_room_t *r);
/* A live room message (seq, shared frame f, origin connection or 0). */
void chat_stream_msg(proto_t *p, pl_room_t *r, int64_t seq, pl_frame_t *f, uint64_t origin);
/* A live DM of user's dm room (room_len <= PL_ROOM_MAX bytes, no NUL). */
void chat_stream_dm(proto_t *p, const char *user, const char *room, size_t room_len, int64_t seq,
                    pl_frame_t *f, uint64_t origin);
/* The room's / user's channel subscription is confirmed (again). */
void chat_stream_subscribed(proto_t *p, const char *room);
void chat_stream_user_subscribed(proto_t *p, const char *user);
/* The subscription link dropped. */
void chat_stream_sub_down(proto_t *p);
/* Fetches every subscribed room still waiting (command link back up). */
void chat_stream_refetch(proto_t *p);
/* The refetch timer (p->refetch) callback. */
void chat_on_refetch(evutil_socket_t fd, short what, void *arg);
/* The user's DM stream for a dm room (NULL when the user has no local
 * connection), and forgetting all of a user's streams (O(its streams)). */
dmstream_t *chat_dm_stream(proto_t *p, const char *user, const char *room);
/* Calls fn for every DM stream of every local user (p->dms holds users,
 * each with its streams); fn must not add or drop DM streams. */
void chat_dm_each(proto_t *p, void (*fn)(proto_t *p, dmstream_t *d, void *arg), void *arg);
void chat_dm_forget(proto_t *p, const char *user);
/* Drops DM streams idle too long (the housekeeping tick), and all of them
 * (worker stop). */
void chat_dm_sweep(proto_t *p);
void chat_dm_free_all(proto_t *p);
/* Queues f on every local connection of user except origin; is_msg
 * counts deliveries. */
void chat_user_fanout(proto_t *p, const char *user, pl_frame_t *f, uint64_t origin, int is_msg);

/* ---- refill.c: a stream's missing range from Redis and MariaDB, bounded ---- */

/* What a refill of (after, upto] found, valid during the callback only:
 * first the gap (if any), then older (MariaDB part), then recent (Redis
 * part), all in seq order and above the gap. */
typedef struct chat_refill_res {
    int status;               /* 0 done; -1 Redis unavailable: nothing decided, retry */
    int64_t upto;             /* end of the range (the room's seq when asked with upto < 0) */
    int64_t gap_from, gap_to; /* missing, to announce (0 = none) */
    int over;                 /* past recover_max or the byte budget: nothing replayed */
    const pl_history_page_t *older, *recent; /* never NULL */
} chat_refill_res_t;
typedef void (*chat_refill_fn)(void *arg, const chat_refill_res_t *res);

/* Limits and metrics (ids; -1 until chat_refill_start). */
extern int chat_m_gap_events, chat_m_refill_redis, chat_m_refill_mysql;
extern int chat_l_refill_max;
extern int chat_l_recover_max, chat_l_stream_queue, chat_l_history_wait, chat_l_redis_queue;
/* Worker start: registers the series and limit names above. */
void chat_refill_start(pl_metrics_t *m);
/* Worker stop, before the pools are freed: ends refills waiting to retry. */
void chat_refill_stop(void);
/* Refills (after, upto] of room (upto < 0: up to the room's seq key, read
 * first). Returns -1 at once when Redis is down (cb not called); else cb
 * is called exactly once, possibly before this returns. */
int chat_refill(proto_t *p, const char *room, int64_t after, int64_t upto, chat_refill_fn cb,
                void *arg);
/* Counts a stream refill's messages by source (not join recoveries). */
void chat_refill_count(const chat_refill_res_t *res);
/* The same for one chunk: the oldest part of (after, upto] within
 * recover_max and the byte budget (never over; res->upto is still the
 * range's end, the caller asks again from where the chunk ended). */
int chat_refill_chunk(proto_t *p, const char *room, int64_t after, int64_t upto, chat_refill_fn cb,
                      void *arg);
/* The bytes a refill or join recovery may replay (send_buffer_limit / 4). */
size_t chat_refill_byte_budget(const proto_t *p);
/* {"ev":"gap","room":R,"from":F,"to":T} as a frame (one reference, the caller's). */
pl_frame_t *chat_gap_frame(const char *room, int64_t from, int64_t to);

/* ---- userconn.c: max_user_connections ---- */

/* Counts s's connection in its user's set in Redis (auth, token already
 * good). Sets s->uconn_wait while the answer is out; over the limit the
 * connection gets too_many_connections and 1008. Redis down: allowed
 * (counted by the next refresh). No-op when max_user_connections is 0. */
void chat_uconn_add(proto_t *p, session_t *s);
/* s's connection is closed: remove it from the set. */
void chat_uconn_del(proto_t *p, session_t *s);
/* Extends every local authenticated connection's entry (the tick). */
void chat_uconn_refresh(proto_t *p);

/* ---- deliver.c: the pl_bus handlers (decode, route into stream.c) ---- */

void chat_on_bus_message(void *arg, const char *channel, size_t chlen, const char *payload,
                         size_t len);
void chat_on_bus_subscribed(void *arg, const char *channel);
void chat_on_bus_sub_down(void *arg);
void chat_on_bus_cmd_up(void *arg);
void chat_on_bus_queue_full(void *arg);

/* ---- join.c ---- */

void chat_cmd_join(proto_t *p, session_t *s, const pl_cmd_t *cmd);
void chat_cmd_leave(proto_t *p, session_t *s, const pl_cmd_t *cmd);
/* Removes a member; the last one of the room drops it. */
void chat_leave_member(proto_t *p, session_t *s, pl_member_t *m);

/* ---- send.c ---- */

void chat_cmd_send(proto_t *p, session_t *s, const pl_cmd_t *cmd);
/* Runs a send past the guard (in order behind a room's floor lookup). */
void chat_send_go(proto_t *p, req_t *q);
void chat_cmd_dm(proto_t *p, session_t *s, const pl_cmd_t *cmd);

/* ---- history.c ---- */

void chat_cmd_history(proto_t *p, session_t *s, const pl_cmd_t *cmd);

/* ---- guard.c: a room's seq never goes backwards ----
 *
 * When the command link comes (back) up, every room and DM stream this
 * worker knows gets its Redis seq raised to at least the highest seq the
 * worker delivered or had acknowledged there (then, with MySQL, to
 * MAX(seq) too) before the worker sends into it again: its sends wait on
 * the room's guard, or answer unavailable while a failed raise waits for
 * its retry. */

/* Command link up: raise every known room (pipelined first on the link). */
void chat_guard_cmd_up(proto_t *p);
/* Takes q (returns 1) when its room is guarded: held until the raise is
 * done, or answered unavailable. 0: go ahead. */
int chat_guard_hold(proto_t *p, req_t *q);
/* Raises the room's seq key to at least floor (a regression was seen). */
void chat_guard_raise(proto_t *p, const char *room, int64_t floor);
/* Heartbeat: keeps the seq keys of local DM streams alive. */
void chat_guard_keep_dms(proto_t *p);
/* Worker stop: answers what is held, frees every guard. */
void chat_guard_stop(proto_t *p);

/* ---- presence.c ---- */

void chat_cmd_presence(proto_t *p, session_t *s, const pl_cmd_t *cmd);
void chat_cmd_typing(proto_t *p, session_t *s, const pl_cmd_t *cmd);
/* At worker start: registers the presence_events_max limit label. */
void chat_presence_start(void);
/* Runs the presence script's join or leave for user's member of this worker. */
void chat_presence_change(proto_t *p, const char *op, const char *room, const char *user,
                          uint64_t conn);
/* Heartbeat: refreshes every local member (timer callback; fd -1 to run now). */
void chat_on_beat(evutil_socket_t fd, short what, void *arg);

/* ---- archstat.c: the archive stream gauges (worker 0 reads, every worker
 * registers) ---- */
void chat_archstat_start(proto_t *p);
void chat_archstat_stop(void);

#endif
