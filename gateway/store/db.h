/*
 * The worker's asynchronous MySQL/MariaDB pool: older history pages and a
 * room's highest archived seq, read without ever blocking the event loop.
 *
 * Each worker owns one pl_db_t with a few connections driven by MariaDB
 * Connector/C's non-blocking API on the worker's libevent loop. Requests
 * queue (bounded) until a connection is free; every request ends within
 * PL_DB_REQUEST_TIMEOUT_MS with a result or an error, including when the
 * database is down or hung. No MySQL types appear here: results reach the
 * callbacks as plain C data.
 *
 * Callbacks are always called later (from the event loop, or from
 * pl_db_free), never from inside the call that submitted the request, and
 * exactly once per request unless it is cancelled.
 */
#ifndef PL_DB_H
#define PL_DB_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct pl_db pl_db_t;
typedef struct pl_db_req pl_db_req_t;

/* A request fails when it has not finished this long after it was submitted
 * (queue wait, connect and query together); its connection is dropped. */
#define PL_DB_REQUEST_TIMEOUT_MS 3000
/* Connect, read and write timeouts handed to the client library (seconds). */
#define PL_DB_IO_TIMEOUT_S 2
/* Requests waiting for a connection, per pool; past it requests fail with
 * PL_DB_EBUSY. */
#define PL_DB_QUEUE_MAX 1024
/* pl_db_history() returns at most this many rows whatever limit asks. */
#define PL_DB_HISTORY_MAX 1000

/* A callback's status: 0 or one of these (all negative). */
enum pl_db_status {
    PL_DB_OK = 0,
    PL_DB_EDOWN = -1,    /* could not connect, or the database failed recently (backoff) */
    PL_DB_ETIMEOUT = -2, /* not done within PL_DB_REQUEST_TIMEOUT_MS */
    PL_DB_EQUERY = -3,   /* the server rejected the query (e.g. no such table) */
    PL_DB_ELOST = -4,    /* the connection died during the query */
    PL_DB_EBUSY = -5,    /* PL_DB_QUEUE_MAX requests already waiting */
    PL_DB_ECLOSED = -6,  /* pl_db_free ran while the request was pending */
};

/* A short name for a status ("ok", "down", "timeout", ...). */
const char *pl_db_status_name(int status);

/* One archived message. Pointers are valid only during the callback that
 * receives the row; copy what you keep. */
typedef struct pl_db_row {
    uint64_t seq;
    uint64_t ts_ms; /* created_at (stored as UTC) in unix milliseconds */
    const char *msg_id;
    size_t msg_id_len;
    const char *sender;
    size_t sender_len;
    const char *text; /* may contain NUL bytes: use text_len */
    size_t text_len;
    const char *room; /* pl_db_select with a 6th column (cross-room form), else NULL */
    size_t room_len;
} pl_db_row_t;

/* status 0: max_seq is the room's highest archived seq, 0 when it has none.
 * status < 0: max_seq is 0 and means nothing. */
typedef void (*pl_db_max_seq_cb)(void *arg, int status, uint64_t max_seq);
/* status 0: n rows (0..limit), oldest first; rows is valid only during the
 * call. status < 0: rows is NULL, n is 0. */
typedef void (*pl_db_history_cb)(void *arg, int status, const pl_db_row_t *rows, size_t n);
/* status 0: nrows is the number of rows the statement returned (or, for a
 * statement without a result set, the rows it affected). */
typedef void (*pl_db_exec_cb)(void *arg, int status, uint64_t nrows);

/* Creates a pool of pool_size (>= 1) connections on base for mysql_url (see
 * common/mysql_url.h). Nothing connects until the first request. Returns
 * NULL, with an error logged, if the URL does not parse. Create it in the
 * worker, after fork. The client library resolves a host NAME inside its
 * connect, synchronously: give an IP address or a unix socket so that no
 * DNS lookup can stall the loop. */
pl_db_t *pl_db_new(struct event_base *base, const char *mysql_url, int pool_size);

/* Closes every connection, then calls the callback of every pending request
 * (queued or running) with PL_DB_ECLOSED, from inside this call, and frees
 * the pool. A request submitted from one of those callbacks also ends with
 * PL_DB_ECLOSED before this returns (so do not resubmit on that status);
 * cancelling another pending one still works. Must not be called from
 * inside a pl_db callback. NULL is a no-op. */
void pl_db_free(pl_db_t *db);

/* The request functions copy room (room_len bytes, any content: it is sent
 * as a hex literal) and return a handle for pl_db_cancel(). The handle is
 * valid until the callback starts or the request is cancelled. They never
 * return NULL: a request refused at once (queue full, database down) still
 * gets its callback, with an error, from the loop. */

/* The highest seq archived for room (SELECT MAX(seq)). */
pl_db_req_t *pl_db_max_seq(pl_db_t *db, const char *room, size_t room_len, pl_db_max_seq_cb cb,
                           void *arg);

/* The newest min(limit, PL_DB_HISTORY_MAX) messages of room with
 * seq < before_seq, delivered oldest first. */
pl_db_req_t *pl_db_history(pl_db_t *db, const char *room, size_t room_len, uint64_t before_seq,
                           unsigned limit, pl_db_history_cb cb, void *arg);

/* A history SELECT built by store/hquery.c (room, sender and bounds as
 * hex literals and integers, never client text): columns seq, msg_id,
 * sender, text, ts_ms and optionally room; rows delivered oldest first
 * (ascending: the query already orders them so; else they are reversed).
 * Not limited to PL_DB_HISTORY_MAX: the query's LIMIT is the bound. */
pl_db_req_t *pl_db_select(pl_db_t *db, const char *sql, size_t sql_len, int ascending,
                          pl_db_history_cb cb, void *arg);

/* Runs one SQL statement as given and reports its row count. For tests and
 * tools (e.g. "SELECT SLEEP(1)"); the gateway itself never builds SQL from
 * client input with this. */
pl_db_req_t *pl_db_exec(pl_db_t *db, const char *sql, size_t sql_len, pl_db_exec_cb cb, void *arg);

/* Withdraws a request whose requester went away: its callback will not be
 * called. A query already running finishes on its connection and its result
 * is discarded. Cancelling from inside the request's own callback is a
 * no-op. */
void pl_db_cancel(pl_db_req_t *req);

/* Counters for metrics and tests. */
typedef struct pl_db_stats {
    unsigned pool_size;
    unsigned connected;     /* connections open now (idle or busy) */
    unsigned busy;          /* connections running a request now */
    unsigned busy_max;      /* most connections ever busy at once */
    unsigned queued;        /* requests waiting for a connection now */
    uint64_t connects;      /* successful connects */
    uint64_t connect_fails; /* failed connect attempts */
    uint64_t done;          /* requests that ended with status 0 */
    uint64_t failed;        /* requests that ended with an error */
} pl_db_stats_t;

void pl_db_get_stats(const pl_db_t *db, pl_db_stats_t *out);

#endif
