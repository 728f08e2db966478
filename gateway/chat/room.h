/*
 * The worker's local chat index, kept both ways (STYLE.md): room ->
 * members and connection -> members, plus user -> connections for DMs and
 * per-room user counts for presence. Pure bookkeeping: no I/O, no Redis;
 * join.c, cmd.c (auth, close) and stream.c drive it and (un)subscribe the
 * room or user channel on the bus when it gains its first or loses its
 * last local member.
 *
 * A pl_member_t is the link "this connection is joined to this room"; it
 * sits on the room's list and on the connection's list at once, so leave
 * and close update both sides in O(1). A connection finds its member of a
 * room by a hash lookup (pl_conn_rooms_t), and a room its entry for a user
 * likewise (pl_room_t.user_ix): no command scans a list whose length a
 * client chooses.
 */
#ifndef PL_ROOM_H
#define PL_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "map.h"
#include "seqcheck.h"
#include "ratelimit.h"

/* ---- queued live messages (room not ready / member recovering) ---- */
typedef struct pl_qmsg {
    int64_t seq;          /* room seq */
    uint64_t origin_conn; /* local connection to skip, 0 = none */
    pl_frame_t *f;        /* one reference held by the queue */
} pl_qmsg_t;

/* Bounded by its users (stream.c: stream_queue_max messages and
 * send_buffer_limit bytes, checked with pl_mqueue_full before a push). */
typedef struct pl_mqueue {
    pl_qmsg_t *v;
    size_t n, cap;
    size_t bytes; /* frame bytes referenced by the queue */
} pl_mqueue_t;

/* 1 when q holds max_n messages or max_bytes bytes already. */
int pl_mqueue_full(const pl_mqueue_t *q, size_t max_n, size_t max_bytes);
/* Drops the first k entries (their references), keeping the rest in order. */
void pl_mqueue_shift(pl_mqueue_t *q, size_t k);
/* Appends (takes a new reference on f). */
void pl_mqueue_push(pl_mqueue_t *q, int64_t seq, uint64_t origin_conn, pl_frame_t *f);
/* Drops every reference and empties the queue. */
void pl_mqueue_clear(pl_mqueue_t *q);

struct pl_room;

typedef struct pl_member {
    struct pl_room *room;
    void *conn;                      /* the pl_conn_t (opaque here) */
    uint64_t conn_id;                /* its id, compared with envelope origins */
    const char *user;                /* owned by the connection's session */
    struct pl_member *rprev, *rnext; /* on room->members */
    struct pl_member *cprev, *cnext; /* on the connection's list */
    int recovering;                  /* join with since in flight: live messages go to q */
    int waiting;    /* its join waits for the room to be READY: what the room delivers meanwhile is
                     * at or below the seq the join answers, so nothing is held for it */
    int64_t cursor; /* highest seq this member has been sent */
    pl_mqueue_t q;  /* live messages held while recovering */
} pl_member_t;

typedef struct pl_room_user {
    char *user;
    int conns;          /* local connections of this user joined to the room */
    uint64_t typing_ms; /* monotonic ms this user's last typing here was forwarded, 0 = never */
} pl_room_user_t;

/* Stream state of a room on this worker (the machine is stream.c, its
 * transitions are listed in chat.h): messages are handed to members
 * strictly in seq order, each once. */
enum room_stream {
    ROOM_WAIT,  /* subscribing, or fetching the base seq / missed messages; live messages queue */
    ROOM_READY, /* live messages with last_seq+1 are delivered at once */
};

typedef struct pl_room {
    char *name;
    pl_member_t *members; /* local members, newest first */
    size_t nmembers;
    pl_room_user_t *users; /* distinct local users and their connection counts */
    size_t nusers, capusers;
    pl_map_t user_ix; /* user -> its index in users, plus 1 (stored as a pointer) */
    enum room_stream stream;
    int have_base;       /* last_seq is known */
    int64_t last_seq;    /* last seq delivered to this worker's members */
    int64_t max_acked;   /* highest seq a send from this worker got (seq floor hint) */
    int fetching;        /* a base/catch-up fetch is in flight */
    int subscribed;      /* the channel subscription is confirmed */
    pl_mqueue_t pending; /* live messages that arrived while ROOM_WAIT (bounded) */
    int dropped;         /* pending overflowed since the last fetch: its gap is refetched */
    int64_t refill_upto; /* a chunked refill runs up to this seq (0 = none): the next chunk
                          * is fetched once the members' output drained (stream.c) */
    int64_t refill_done; /* messages the refills delivered since the room was last READY */
    int base_lost;       /* the base read found no seq key and no live message followed it yet: its
                          * first refill is one bounded read, not chunked (stream.c start_fetch) */
    uint64_t pace_ms;    /* when the refill began waiting for the output to drain (0 = not) */
    void *waiters;       /* joins waiting for ROOM_READY (stream.c's req_t list) */
    uint64_t gen;        /* incarnation, set by stream.c: stale fetch replies are ignored */
    pl_seqcheck_t seen;  /* recent (seq, msg_id) delivered: duplicate or regression */
} pl_room_t;

typedef struct pl_rooms {
    pl_map_t rooms; /* name -> pl_room_t */
    pl_map_t users; /* user -> pl_user_conns_t */
} pl_rooms_t;

typedef struct pl_user_conns {
    void **conns; /* pl_conn_t pointers of this user on this worker */
    size_t n, cap;
    pl_ratelimit_t rl; /* the user's command bucket on this worker, shared by all its
                          connections (cmd.c initialises it with the first one) */
} pl_user_conns_t;

/* A connection's rooms: its member list and a map from room name to
 * member, so finding one is a hash lookup, not a walk of the list (a
 * connection may hold max_rooms_per_connection rooms). Zeroed = empty; the
 * map exists only while n > 0, so an idle connection pays nothing. */
typedef struct pl_conn_rooms {
    pl_member_t *head; /* newest first, linked by cnext/cprev */
    pl_map_t *by_name; /* room name -> pl_member_t; NULL while n == 0 */
    size_t n;          /* rooms joined */
} pl_conn_rooms_t;

void pl_rooms_init(pl_rooms_t *rs);
/* Frees every room and user entry; members must already be gone. */
void pl_rooms_free(pl_rooms_t *rs);

pl_room_t *pl_room_get(pl_rooms_t *rs, const char *name);

/* Joins conn to room name (created if needed); cr is the connection's
 * rooms. Returns the new member, or NULL if already joined.
 * *first_conn is set when the room had no local member before (subscribe);
 * *first_user when this is the user's first local connection in the room
 * (announce presence). */
pl_member_t *pl_room_join(pl_rooms_t *rs, const char *name, void *conn, uint64_t conn_id,
                          const char *user, pl_conn_rooms_t *cr, int *first_conn, int *first_user);

/* The member linking the connection (by its rooms) to room name, or NULL. */
pl_member_t *pl_room_member(const pl_conn_rooms_t *cr, const char *name);

/* Unlinks and frees m. *last_user is set when it was the user's last
 * local connection in the room, *empty when the room has no local member
 * left (the room itself stays until pl_room_drop). */
void pl_room_leave(pl_member_t *m, pl_conn_rooms_t *cr, int *last_user, int *empty);

/* Frees an empty room and removes it from the index. */
void pl_room_drop(pl_rooms_t *rs, pl_room_t *r);

/* Local connections of the user in the room (0 if none). */
int pl_room_user_conns(const pl_room_t *r, const char *user);

/* typing_interval: 1 if the user's typing in r may be forwarded at now_ms
 * (none forwarded within interval_ms before; the stamp moves to now_ms),
 * 0 to drop it. The user must have a local member in r (else 0). */
int pl_room_typing_allow(pl_room_t *r, const char *user, uint64_t now_ms, uint64_t interval_ms);

/* user -> connections: returns 1 when conn is the user's first local one
 * (subscribe the user channel) / its last (unsubscribe). */
int pl_user_add(pl_rooms_t *rs, const char *user, void *conn);
int pl_user_del(pl_rooms_t *rs, const char *user, void *conn);
pl_user_conns_t *pl_user_get(pl_rooms_t *rs, const char *user);

#endif
