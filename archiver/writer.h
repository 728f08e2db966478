/*
 * The MySQL side of the archiver: turning stream entries into `messages`
 * rows and writing a batch with one multi-row INSERT IGNORE in one
 * transaction, telling re-deliveries (same key, same msg_id: fine) from
 * conflicts (same key, different msg_id: an error).
 *
 * The pure parts (row validation, SQL building, classification) take no
 * connection state beyond a MYSQL handle for escaping, so unit tests run
 * them on an unconnected handle.
 */
#ifndef PL_ARCH_WRITER_H
#define PL_ARCH_WRITER_H

#include "buf.h"
#include "mysql_url.h"

#include <mysql.h>
#include <stddef.h>
#include <stdint.h>

/* A byte string that may contain NULs; points into memory owned elsewhere. */
typedef struct pl_arch_bytes {
    const char *p;
    size_t n;
} pl_arch_bytes_t;

/* Column limits (deploy/sql/001_messages.sql). */
#define PL_ARCH_ROOM_MAX_CHARS 128
#define PL_ARCH_SENDER_MAX_CHARS 64
#define PL_ARCH_MSGID_MAX_BYTES 64
/* text: at most PL_TEXT_MAX bytes (keys.h), the bound of the gateway's max_text_size */
#define PL_ARCH_TS_MAX 253402300799999ULL /* 9999-12-31 23:59:59.999 UTC */

/* One message as the gateway XADDs it; every pointer aliases the stream
 * reply the row was parsed from and lives as long as it does. */
typedef struct pl_arch_row {
    pl_arch_bytes_t room;
    uint64_t seq;
    pl_arch_bytes_t msg_id;
    pl_arch_bytes_t sender; /* the entry's "from" field */
    pl_arch_bytes_t text;
    uint64_t ts_ms; /* unix ms, stored as created_at DATETIME(3) in UTC */
} pl_arch_row_t;

/* Fills *row from a stream entry's alternating field/value list (nfields
 * counts both). Unknown fields are ignored; a repeated field takes the last
 * value. Returns 0, or -1 with *why set to a static reason
 * ("missing field seq", "bad seq", "room is not UTF-8", ...). */
int pl_arch_row_parse(pl_arch_row_t *row, const pl_arch_bytes_t *fields, size_t nfields,
                      const char **why);

/* Formats unix ms as 'YYYY-MM-DD HH:MM:SS.mmm' (UTC, 23 chars + NUL). */
void pl_arch_format_ts(uint64_t ts_ms, char out[24]);

/* Replaces b's contents with one "INSERT IGNORE INTO messages ... VALUES"
 * statement holding rows[0..k), escaping with mysql_real_escape_string on
 * m, where k >= 1 is the largest count keeping the statement within
 * max_bytes (a single row is always taken). Returns k. */
size_t pl_arch_build_insert(pl_buf_t *b, MYSQL *m, const pl_arch_row_t *rows, size_t n,
                            size_t max_bytes);

/* Replaces b's contents with "SELECT room, seq, msg_id FROM messages WHERE
 * (room, seq) IN (...)" for rows[0..n). */
void pl_arch_build_keycheck(pl_buf_t *b, MYSQL *m, const pl_arch_row_t *rows, size_t n);

/* What happened to one row of a batch. */
enum pl_row_status {
    ROW_STORED,   /* in the table with this msg_id (new or an idempotent re-delivery) */
    ROW_CONFLICT, /* the key holds a different msg_id: not stored, an error */
    ROW_MISSING,  /* not in the table after the insert (should not happen) */
};

/* Classifies rows[0..n) against the stored (room, seq, msg_id) triples
 * found[0..nfound) read back after INSERT IGNORE; writes status[i] and
 * returns the number of ROW_STORED rows. */
size_t pl_arch_classify(const pl_arch_row_t *rows, size_t n, const pl_arch_row_t *found,
                        size_t nfound, uint8_t *status);

/* Outcome of pl_writer_write. */
typedef struct pl_write_result {
    uint64_t inserted;   /* new rows */
    uint64_t duplicates; /* re-deliveries of rows already stored with the same msg_id */
    uint64_t conflicts;  /* same (room, seq), different msg_id */
    uint64_t missing;    /* neither inserted nor found (see ROW_MISSING) */
} pl_write_result_t;

enum pl_write_rc {
    WRITE_OK = 0,     /* committed; status[] and *res are filled */
    WRITE_RETRY = -1, /* connection or transient server error: nothing committed, try again */
    WRITE_FATAL = -2, /* schema or permission problem that retrying will not fix */
};

typedef struct pl_writer pl_writer_t;

/* Opens a connection with utf8mb4, timeouts and the given client flags
 * (e.g. CLIENT_MULTI_STATEMENTS). On failure returns NULL, writes the
 * reason to err and, when errnum is not NULL, the MySQL error number. */
MYSQL *pl_arch_mysql_open(const pl_mysql_url_t *url, unsigned long flags, char *err, size_t errlen,
                          unsigned *errnum);

/* Returns 1 for MySQL error numbers worth retrying (lost connection,
 * server shutting down, deadlock, lock wait timeout, read-only...). */
int pl_arch_mysql_transient(unsigned errnum);

/* The writer keeps url (not copied; must outlive it) and connects lazily. */
pl_writer_t *pl_writer_new(const pl_mysql_url_t *url);
void pl_writer_free(pl_writer_t *w);

/* Writes rows[0..n) in one transaction (normally one INSERT; more only when
 * one would exceed the server's max_allowed_packet) and commits. On
 * WRITE_OK status[i] tells each row's fate. On failure nothing is
 * committed; the connection is dropped and the next call reconnects. */
int pl_writer_write(pl_writer_t *w, const pl_arch_row_t *rows, size_t n, uint8_t *status,
                    pl_write_result_t *res);

/* The last error as text, for logs. */
const char *pl_writer_error(const pl_writer_t *w);

#endif
