/*
 * The Redis key and channel schema, in one place: every key and channel
 * the gateway and the archiver use is built here, and the channels the
 * gateway subscribes to are parsed here. docs/protocol.md 3.1 describes
 * the same keys in prose.
 *
 * Room keys carry the room in a {hash tag}, so all keys of one room live
 * on one cluster slot / shard.
 *
 *   key                               type    written by                   TTL
 *   parley:{<room>}:seq               string  send script (INCR),          history_ttl (each send),
 *                                             seq script (raise, never     at least the presence
 *                                             lower; chat/guard.c)         key's while the room
 *                                                                          has members
 *   parley:{<room>}:recent            zset    send script (ZADD, trim)     history_ttl (each send)
 *   parley:{<room>}:archived          string  send script (SET NX floor),  history_ttl (each send)
 *                                             archiver (raises it)
 *   parley:{<room>}:archived:runs     zset    archiver (mark script)       7 days
 *   parley:{<room>}:cid:<user>:<cid>  string  send script, with a cid      5 minutes
 *   parley:{<room>}:noseq:<origin>.<worker>
 *                                     string  send script (noseq mark)     10 s, deleted on
 *                                                                          the floor re-run
 *   parley:{<room>}:presence          zset    presence script              120 s (each call)
 *   parley:{<room>}:presence:users    hash    presence script (user ->     120 s (each call)
 *                                             its members in the zset)
 *   parley:user:{<user>}:conns        zset    userconn script (gateway:    45 s (each call)
 *                                             auth, heartbeat, close)
 *   parley:archive                    stream  send script (XADD),          none: the archiver
 *                                             archiver (group, XACK)       XTRIMs what it acked
 *   channels (PUBLISH / SUBSCRIBE, no TTL):
 *   parley:{<room>}:ch                send script (msg), presence script, typing (gateway)
 *   parley:user:{<user>}              send script (a dm, to both users)
 *   parley:node:{<node_id>}:<worker>  nobody yet: each worker keeps it subscribed (control)
 *
 * Builders write into buf, PL_KEY_MAX bytes, unless they take a size.
 * Names are valid room / user names (at most PL_ROOM_MAX / PL_USER_MAX
 * bytes), so nothing is cut; an oversized argument is cut, never
 * overflowed.
 */
#ifndef PL_KEYS_H
#define PL_KEYS_H

#include <stddef.h>

#define PL_USER_MAX 64  /* a user id (the token's sub) */
#define PL_ROOM_MAX 128 /* a room name */
#define PL_KEY_MAX 512  /* any key or channel built here, with its NUL */

/* The archive stream every send appends to (archiver's default too). */
#define PL_KEY_ARCHIVE "parley:archive"
/* Bytes of one message text, the most the archiver stores (a MySQL TEXT
 * column, deploy/sql): max_text_size may not exceed it, or every longer
 * text would be dead-lettered and its room's archived marker frozen. */
#define PL_TEXT_MAX 65535

/* ---- room keys ---- */

/* "parley:{<room>}:<what>": the shape of every room key below. */
void pl_key_room(char *buf, const char *room, const char *what);
void pl_key_seq(char *buf, const char *room);      /* "parley:{<room>}:seq" */
void pl_key_recent(char *buf, const char *room);   /* "parley:{<room>}:recent" */
void pl_key_archived(char *buf, const char *room); /* "parley:{<room>}:archived" */
void pl_key_presence(char *buf, const char *room); /* "parley:{<room>}:presence" */
/* "parley:{<room>}:presence:users": user -> its members in the presence zset. */
void pl_key_presence_users(char *buf, const char *room);
/* "parley:{<room>}:cid:<user>:<cid>". */
void pl_key_cid(char *buf, const char *room, const char *user, const char *cid);
/* "parley:{<room>}:noseq:<origin>.<worker>": a worker's "waiting for a seq
 * floor" mark (origin is "<node_id>.<pid>"). */
void pl_key_noseq(char *buf, const char *room, const char *origin, int worker);

/* The archiver's marker keys, for a room given as bytes from the stream
 * (room_len of them, up to a NUL), into buf of size bytes. */
void pl_key_archived_n(char *buf, size_t size, const char *room, size_t room_len);
void pl_key_archived_runs_n(char *buf, size_t size, const char *room, size_t room_len);

/* ---- user keys ---- */

/* "parley:user:{<user>}:conns": the user's live connections in the
 * cluster ("<origin>|<conn id>" scored by expiry ms, max_user_connections). */
void pl_key_user_conns(char *buf, const char *user);

/* ---- channels ---- */

void pl_key_room_channel(char *buf, const char *room); /* "parley:{<room>}:ch" */
void pl_key_user(char *buf, const char *user);         /* "parley:user:{<user>}" (DMs) */
/* "parley:node:{<node_id>}:<worker>". */
void pl_key_node(char *buf, const char *node_id, int worker);

/* Parsers for the channels a gateway subscribes to: ch is n bytes (no
 * NUL needed). On a match copy the name (1..PL_ROOM_MAX / PL_USER_MAX
 * bytes) with its NUL into room / user and return 0; else -1. */
int pl_key_parse_room_channel(const char *ch, size_t n, char room[PL_ROOM_MAX + 1]);
int pl_key_parse_user(const char *ch, size_t n, char user[PL_USER_MAX + 1]);

#endif
