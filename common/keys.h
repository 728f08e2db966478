/*
 * The Redis key and channel schema, in one place: every key the gateway
 * and the archiver read or write is built (and, for channels, parsed)
 * here. docs/protocol.md lists the same keys with their types and TTLs.
 *
 * Room keys carry the room in a {hash tag}, so all keys of one room live
 * on one cluster slot / shard.
 */
#ifndef PL_KEYS_H
#define PL_KEYS_H

#include <stddef.h>

#define PL_USER_MAX 64  /* a user id (the token's sub) */
#define PL_ROOM_MAX 128 /* a room name */
#define PL_KEY_MAX 512  /* any key or channel built here, with its NUL */

/* The archive stream every send appends to (archiver's default too). */
#define PL_KEY_ARCHIVE "parley:archive"

/* "parley:{<room>}:<what>" into buf (PL_KEY_MAX bytes), e.g. what = "seq",
 * "recent", "presence", "archived". */
void pl_key_room(char *buf, const char *room, const char *what);
/* Channel of a user's DMs: "parley:user:{<user>}". */
void pl_key_user(char *buf, const char *user);
/* "parley:{<room>}:cid:<user>:<cid>" (5 minute TTL). */
void pl_key_cid(char *buf, const char *room, const char *user, const char *cid);

#endif
