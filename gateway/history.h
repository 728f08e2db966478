/*
 * Message history: the recent part lives in Redis (the room's zset of
 * event JSON scored by seq, trimmed to history_recent); older pages will
 * come from MySQL (another module). This file owns the Redis reads and
 * the seam where the MySQL part plugs in:
 *
 *   pl_history_older_needed()  pure: given the Redis page and the request,
 *                              is an older part needed and which range
 *   pl_history_older()         fetch that older part (today: nothing)
 *   pl_history_seq_floor()     a room's last archived seq when its Redis
 *                              seq key is gone (today: 0)
 *
 * Key names for every room key are built here too (docs/protocol.md).
 */
#ifndef PL_HISTORY_H
#define PL_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"

#define PL_KEY_MAX 512

/* "parley:{<room>}:<what>" into buf (PL_KEY_MAX bytes). The braces are a
 * cluster hash tag: all keys of a room live on one shard. */
void pl_key_room(char *buf, const char *room, const char *what);
/* Channel of a user's DMs: "parley:user:{<user>}". */
void pl_key_user(char *buf, const char *user);
/* "parley:{<room>}:cid:<user>:<cid>" (5 minute TTL). */
void pl_key_cid(char *buf, const char *room, const char *user, const char *cid);
#define PL_KEY_ARCHIVE "parley:archive"

typedef struct pl_hmsg {
    int64_t seq;
    char *json; /* the stored event, {"ev":"msg",...}, NUL-terminated */
    size_t len;
} pl_hmsg_t;

/* Messages oldest first. */
typedef struct pl_history_page {
    pl_hmsg_t *v;
    size_t n;
    int more; /* older messages exist beyond this page (in Redis) */
} pl_history_page_t;

/* status 0 = page filled (possibly empty); -1 = Redis unavailable. The
 * page belongs to history.c and is freed after the callback returns. */
typedef void (*pl_history_fn)(void *arg, int status, pl_history_page_t *page);

/* Newest up to limit messages with seq < before (before <= 0: newest),
 * oldest first; page->more when Redis holds older ones. Returns -1 at once
 * when Redis is down (cb not called). */
int pl_history_recent(pl_bus_t *bus, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg);

/* Messages with after < seq <= upto (upto < 0: no upper bound), oldest
 * first, for recovery. Returns -1 at once when Redis is down. */
int pl_history_range(pl_bus_t *bus, const char *room, int64_t after, int64_t upto, pl_history_fn cb,
                     void *arg);

/* THE SEAM, pure: the client asked for limit messages before `before`
 * (<= 0: newest) and Redis returned page. Returns 1 when an older part
 * must come from the archive, with the range to ask for: seq < *older_before,
 * at most *older_limit messages. Returns 0 when Redis answered it all. */
int pl_history_older_needed(const pl_history_page_t *page, int64_t before, int limit,
                            int64_t *older_before, int *older_limit);

/* Fetches the older part from the archive. TODAY (no MySQL): calls cb at
 * once with an empty page. The MySQL engineer replaces the body with an
 * async query: SELECT ... WHERE room=? AND seq<? ORDER BY seq DESC LIMIT ?
 * (delivering oldest first). */
void pl_history_older(const char *room, int64_t before, int limit, pl_history_fn cb, void *arg);

/* The room's highest seq ever assigned, asked for when its Redis seq key
 * is gone (expired after history_ttl, or Redis lost its data); the send
 * script then continues from it. hint is the highest seq this worker has
 * delivered for the room (0 if none). TODAY (no MySQL): cb(arg, 0, hint)
 * at once, i.e. a room nobody here has seen starts again at 1. The MySQL
 * engineer replaces the body with an async SELECT MAX(seq) for the room
 * and answers max(hint, that) (status -1 when unavailable). */
typedef void (*pl_floor_fn)(void *arg, int status, int64_t floor);
void pl_history_seq_floor(const char *room, int64_t hint, pl_floor_fn cb, void *arg);

/* Frees a page's messages (for callers that build pages). */
void pl_history_page_free(pl_history_page_t *page);

#endif
