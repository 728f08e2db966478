/*
 * The Lua scripts the gateway runs in Redis, as C strings, and the call
 * path for them: EVALSHA with the SHA1 computed locally, falling back to
 * EVAL (which also caches the script) on NOSCRIPT, e.g. after a Redis
 * restart. docs/protocol.md documents the keys and arguments.
 */
#ifndef PL_SCRIPT_H
#define PL_SCRIPT_H

#include "bus.h"

typedef enum {
    PL_SCRIPT_SEND,     /* store + archive + publish one message, see script.c */
    PL_SCRIPT_PRESENCE, /* join/leave/refresh/list a room's presence zset + users hash */
    PL_SCRIPT_SEQ,      /* raise a seq key to a floor, keep its TTL (seq guard) */
    PL_SCRIPT_ARCHSTAT, /* archive stream: {length, ms since the oldest unarchived entry} */
    PL_SCRIPT_USERCONN, /* add/refresh/del a user's live connections (max_user_connections) */
    PL_SCRIPT_COUNT
} pl_script_id_t;

/* Argument positions of PL_SCRIPT_SEND (ARGV, 0-based here). */
enum send_arg {
    SEND_FLOOR,     /* "" = unknown: reply {"noseq"} when the seq key is missing */
    SEND_ROOM,      /* raw room name */
    SEND_ROOM_JSON, /* room as a JSON string literal */
    SEND_MSG_ID,    /* 32 hex digits */
    SEND_FROM,      /* sender user id (safe characters only) */
    SEND_TEXT,      /* raw UTF-8 text (archive) */
    SEND_TEXT_JSON, /* text as a JSON string literal (event) */
    SEND_KEEP,      /* history_recent */
    SEND_TTL,       /* history_ttl in ms */
    SEND_NODE,      /* origin node */
    SEND_WORKER,    /* origin worker index */
    SEND_CONN,      /* origin connection id */
    SEND_USE_CID,   /* "1" when KEYS[3] is a client message id key */
    SEND_MYSQL,     /* "1": MySQL on, trim only archived messages (KEYS[5] = archived) */
    SEND_NARGS      /* channels to publish to follow */
};

/* PL_SCRIPT_SEND keys: seq, recent, cid, archive stream ("" when archive
 * is off: no XADD), archived, noseq mark, presence (KEYS[1..7]). */
#define SEND_NKEYS 7

/* PL_SCRIPT_SEQ: KEYS seq, archived; ARGV below. */
enum seq_arg {
    SEQ_FLOOR,    /* raise the key to at least this */
    SEQ_TTL,      /* ms the key lives at least from now (never shortened) */
    SEQ_CREATE,   /* "1": create a missing key at the floor */
    SEQ_ARCHIVED, /* with SEQ_CREATE: set a missing archived marker to this ("" = leave it) */
    SEQ_NARGS
};

/* Argument positions of PL_SCRIPT_PRESENCE (KEYS: presence zset, users
 * hash, seq). */
enum presence_arg {
    PRES_OP,        /* join | leave | refresh | list */
    PRES_WINDOW,    /* ms a heartbeat keeps a member alive */
    PRES_ROOM,      /* raw room */
    PRES_ROOM_JSON, /* room as a JSON string literal */
    PRES_CHANNEL,   /* room channel for presence events */
    PRES_NODE,      /* origin node */
    PRES_WORKER,    /* origin worker */
    PRES_CONN,      /* origin connection id */
    PRES_KEY_TTL,   /* ms the presence key lives without refresh */
    PRES_EV_MAX,    /* presence_events_max: rooms with more users get no join/leave events */
    PRES_NARGS      /* join/leave: user, member; refresh: members...; list: max users */
};

/* Argument positions of PL_SCRIPT_USERCONN (KEYS[1] = pl_key_user_conns). */
enum userconn_arg {
    UCONN_OP,   /* add | refresh | del */
    UCONN_TTL,  /* ms an entry lives without refresh (also the key's TTL) */
    UCONN_MAX,  /* add: max_user_connections (0 = no limit, just count) */
    UCONN_NARGS /* add, del: one member; refresh: members... ("<origin>|<conn id>") */
};

/* 40 lowercase hex digits. */
const char *pl_script_sha(pl_script_id_t id);

/* Queues SCRIPT LOAD of every script. Call first thing when the command
 * link comes up (before any pl_script_call on it): EVALSHA calls pipelined
 * behind it then never meet NOSCRIPT, whose EVAL retry would go to the
 * back of the pipeline and reorder calls (two sends of a room would get
 * their seqs out of order). The NOSCRIPT retry stays for SCRIPT FLUSH. */
void pl_script_load_all(pl_bus_t *bus);

/* Runs script id with keys and args (copied). Returns -1 at once when
 * Redis is down (fn not called), else fn gets the reply (NULL when the
 * connection dropped) exactly once. */
int pl_script_call(pl_bus_t *bus, pl_script_id_t id, int nkeys, const char **keys, int nargs,
                   const char **args, const size_t *arglens, pl_bus_reply_fn fn, void *arg);

#endif
