/*
 * History by seq window, time and sender (docs/protocol.md 1.5, 3.4): the
 * forms of `history` beyond "newest before a seq" (after, around, from_ts,
 * until_ts, sender) and the cross-room form (a user's own messages in
 * every room). One request reads an atomic Redis snapshot of the room's
 * archived marker and the recent messages above it, then, when the page
 * may reach below the marker, the rows at or below it from MySQL; the
 * union is exact by construction (hquery.c's top comment says why).
 */
#ifndef PL_HQUERY_H
#define PL_HQUERY_H

#include <stdint.h>

#include "bus.h"
#include "db.h"
#include "history.h"
#include "keys.h"

#define PL_HQ_LIMIT_MAX 200

/* One query. Strings are copied by pl_hq_run. */
typedef struct pl_hq {
    char room[PL_ROOM_MAX + 1];   /* "" = cross-room form (sender required, MySQL only) */
    char sender[PL_USER_MAX + 1]; /* "" = any sender */
    int64_t after;                /* seq > after (0 = no bound) */
    int64_t before;               /* seq < before (0 = no bound) */
    int64_t from_ts;              /* ts >= from_ts, unix ms (-1 = no bound) */
    int64_t until_ts;             /* ts <= until_ts, unix ms (-1 = no bound) */
    int forward;                  /* 1: the oldest limit matches; 0: the newest limit */
    int limit;                    /* 1..PL_HQ_LIMIT_MAX */
    /* cross-room paging: only rows older than (cur_ts, cur_room, cur_seq) */
    int has_cursor;
    int64_t cur_ts;
    char cur_room[PL_ROOM_MAX + 1];
    int64_t cur_seq;
} pl_hq_t;

typedef struct pl_hq_result {
    pl_history_page_t *page; /* oldest first; lent for the callback only */
    int complete;            /* nothing more matches in the query's direction */
    /* cross-room form, when !complete: the cursor of the oldest message */
    int64_t next_ts;
    const char *next_room;
    int64_t next_seq;
} pl_hq_result_t;

/* status 0 (res filled), PL_HQ_EREDIS or PL_HQ_EMYSQL (res NULL), or
 * PL_HQ_EHOLE (the parts did not join: answered unavailable, logged). */
enum { PL_HQ_EREDIS = -1, PL_HQ_EMYSQL = -2, PL_HQ_EHOLE = -3 };
typedef void (*pl_hq_fn)(void *arg, int status, const pl_hq_result_t *res);

/* Runs q; cb is called once, later from the loop. Returns -1 at once
 * when Redis is down, -2 for the cross-room form without a db (no
 * mysql_url), cb not called then. With db NULL Redis is all there is. */
int pl_hq_run(pl_bus_t *bus, pl_db_t *db, const pl_hq_t *q, pl_hq_fn cb, void *arg);

/* Pure, for tests: does the stored event json match q's sender and time
 * filters. Returns 1 or 0 (0 also when a field cannot be read). */
int pl_hq_match(const pl_hq_t *q, const char *json, size_t len);

#endif
