/*
 * Message history: the recent part lives in Redis (the room's zset of
 * event JSON scored by seq); older pages come from MySQL through the
 * worker's non-blocking pool (db.h) when mysql_url is set. This file owns
 * the Redis reads and the MySQL part:
 *
 *   pl_history_older_needed()  pure: given the Redis page and the request,
 *                              is an older part needed and which range
 *   pl_history_older()         fetch that older part from MySQL
 *   pl_history_seq_floor()     a room's highest seq ever assigned when its
 *                              Redis seq key is gone (MAX(seq) in MySQL)
 *   pl_history_contiguous()    pure: does the MySQL part end right below
 *                              the Redis part (the no-hole safety net)
 *
 * Key names for every room key are built here too (docs/protocol.md).
 */
#ifndef PL_HISTORY_H
#define PL_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "bus.h"
#include "db.h"
#include "keys.h"

typedef struct pl_hmsg {
    int64_t seq;
    const char *json; /* the stored event, {"ev":"msg",...}, NUL-terminated */
    size_t len;
    /* origin connection (Redis only; node NULL when unknown): a fetch skips
     * the sender as live delivery does */
    const char *node; /* "<node_id>.<pid>", NUL-terminated, or NULL */
    int worker;
    uint64_t conn;
} pl_hmsg_t;

/* Splits a recent-zset member "o1:<conn>:<worker>:<node length>:<node>"
 * followed by the event JSON (or just the JSON, as stored before origins
 * were kept). Sets *json and *json_len to the event and, when present, the
 * origin (node points into m, node_len bytes). Returns 1 with an origin,
 * 0 without. Pure. */
int pl_history_member_parse(const char *m, size_t n, const char **json, size_t *json_len,
                            const char **node, size_t *node_len, int *worker, uint64_t *conn);

/* Messages oldest first. The json and node bytes are never owned one by
 * one: in a page handed to a callback they point into the Redis reply or
 * into buf; a page kept past its callback (pl_history_page_keep) has them
 * all in buf. */
typedef struct pl_history_page {
    pl_hmsg_t *v;
    size_t n;
    int more;  /* older messages exist beyond this page (Redis: in Redis; MySQL: page full) */
    char *buf; /* one allocation holding the bytes v points at, or NULL */
} pl_history_page_t;

/* Replies and MySQL pages are built in common/buf.h's byte buffer. */

/* Appends s (n bytes, may hold NUL) as a JSON string literal, quotes
 * included: byte for byte what jansson's json_dumps(json_stringn(s, n),
 * JSON_ENCODE_ANY | JSON_COMPACT) gives (unit-tested against it). The send
 * path (chat_json_literal) uses it too, so stored and rebuilt events match. Returns 0, or -1 with b
 * unchanged when s is not valid UTF-8. */
int pl_history_json_string(pl_buf_t *b, const char *s, size_t n);

/* status 0 = page filled (possibly empty); -1 = Redis unavailable. The
 * page and every byte it points at belong to history.c and are valid only
 * until the callback returns (copy with pl_history_page_keep). */
typedef void (*pl_history_fn)(void *arg, int status, pl_history_page_t *page);

/* Newest up to limit messages with seq < before (before <= 0: newest),
 * oldest first; page->more when Redis holds older ones. Returns -1 at once
 * when Redis is down (cb not called). */
int pl_history_recent(pl_bus_t *bus, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg);

/* The oldest up to limit (>= 1) messages with after < seq <= upto (upto
 * < 0: no upper bound), oldest first, for recovery and refills (LIMIT in
 * Redis: the reply is bounded). Returns -1 at once when Redis is down. */
int pl_history_range(pl_bus_t *bus, const char *room, int64_t after, int64_t upto, int limit,
                     pl_history_fn cb, void *arg);

/* THE SEAM, pure: the client asked for limit messages before `before`
 * (<= 0: newest) and Redis returned page. Returns 1 when an older part
 * must come from the archive, with the range to ask for: seq < *older_before,
 * at most *older_limit messages. Returns 0 when Redis answered it all. */
int pl_history_older_needed(const pl_history_page_t *page, int64_t before, int limit,
                            int64_t *older_before, int *older_limit);

/* Fetches the older part from MySQL: the newest limit messages with
 * seq < before (before <= 0 or INT64_MAX: no bound), oldest first, each
 * rebuilt as the exact event JSON the send script stores. cb gets status
 * 0 and the page (page->more when it is full, i.e. older ones may exist),
 * or -1 when MySQL failed. Without a db (mysql_url empty) cb is called at
 * once with an empty page. With a db cb is always called later, from the
 * loop (or from pl_db_free with -1). */
void pl_history_older(pl_db_t *db, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg);

/* Appends one stored msg event exactly as the send script builds it, with
 * the room given as its JSON literal (room_json, from
 * pl_history_json_string, so a page escapes it once). Returns 0, or -1 with
 * b unchanged when a string is not valid UTF-8. */
int pl_history_event_append(pl_buf_t *b, const char *room_json, size_t room_json_len, int64_t seq,
                            const char *msg_id, size_t msg_id_len, const char *from,
                            size_t from_len, const char *text, size_t text_len, int64_t ts);

/* Builds one stored msg event exactly as the send script does:
 * {"ev":"msg","room":R,"seq":N,"msg_id":M,"from":F,"text":T,"ts":TS}
 * with R, M, F, T as jansson JSON string literals. Returns a malloc'd
 * NUL-terminated string and its length in *len, or NULL when a string is
 * not valid UTF-8. */
char *pl_history_event_json(const char *room, size_t room_len, int64_t seq, const char *msg_id,
                            size_t msg_id_len, const char *from, size_t from_len, const char *text,
                            size_t text_len, int64_t ts, size_t *len);

/* The safety net, pure: the Redis part recent (oldest first) and the MySQL
 * part older (oldest first) must join without a hole. Returns 1 when they
 * do (or when either is empty), 0 when the newest MySQL seq + 1 is not the
 * oldest Redis seq. */
int pl_history_contiguous(const pl_history_page_t *older, const pl_history_page_t *recent);

/* The room's highest seq ever assigned, asked for when its Redis seq key
 * is gone (expired after history_ttl, or Redis lost its data); the send
 * script then continues from it. hint is the highest seq this worker has
 * delivered or got acknowledged for the room (0 if none). With a db:
 * SELECT MAX(seq) for the room, then cb(arg, 0, max(hint, that)) from the
 * loop, or cb(arg, -1, 0) when MySQL failed (the send must then fail: a
 * room never restarts at 1). Without a db: cb(arg, 0, hint) at once. */
typedef void (*pl_floor_fn)(void *arg, int status, int64_t floor);
void pl_history_seq_floor(pl_db_t *db, const char *room, int64_t hint, pl_floor_fn cb, void *arg);

/* Copies src (e.g. a page lent to a callback) into dst as one allocation
 * (dst->buf) plus the message array; free with pl_history_page_free. */
void pl_history_page_keep(pl_history_page_t *dst, const pl_history_page_t *src);

/* Frees a page's message array and buf (for pages built or kept). */
void pl_history_page_free(pl_history_page_t *page);

#endif
