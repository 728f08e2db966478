/*
 * The Redis side of the archiver: the consumer group on the archive
 * stream. Two blocking hiredis connections: one only reads (XREADGROUP,
 * XAUTOCLAIM), so the next batch can be requested before the current one
 * is written; the other acknowledges, dead-letters, trims and reads group
 * statistics without waiting behind a blocked read.
 *
 * Any Redis error closes both connections; the caller reconnects with
 * backoff and re-reads its own pending entries from ID 0, so nothing
 * delivered but unacknowledged is forgotten.
 */
#ifndef PL_ARCH_READER_H
#define PL_ARCH_READER_H

#include "marks.h"
#include "redis_url.h"
#include "writer.h"

#include <stddef.h>
#include <stdint.h>

/* One entry of a batch; id and fields alias the reply kept in the batch. */
typedef struct pl_arch_entry {
    pl_arch_bytes_t id;
    pl_arch_bytes_t *fields; /* alternating name, value; NULL if the entry was deleted */
    size_t nfields;
} pl_arch_entry_t;

typedef struct pl_arch_batch {
    void *reply; /* the hiredis reply the entries point into */
    pl_arch_entry_t *entries;
    size_t n, cap;
    pl_arch_bytes_t *fieldbuf; /* storage for all entries' field arrays */
    size_t nfieldbuf;
} pl_arch_batch_t;

void pl_arch_batch_clear(pl_arch_batch_t *b);

/* Group statistics for the metrics and for `drain`. */
typedef struct pl_arch_group_stats {
    int64_t pending; /* entries delivered to the group but not acked */
    int64_t lag;     /* entries not yet delivered to the group; -1 if Redis cannot tell */
    int64_t length;  /* XLEN */
} pl_arch_group_stats_t;

typedef struct pl_reader pl_reader_t;

/* Keeps pointers to its arguments (they must outlive the reader). */
pl_reader_t *pl_reader_new(const pl_redis_url_t *url, const char *stream, const char *group,
                           const char *consumer, int64_t block_ms);
void pl_reader_free(pl_reader_t *r);

/* Connects both connections and creates the group (XGROUP CREATE stream
 * group 0 MKSTREAM) unless it exists. Returns 0 or -1 (see error()). */
int pl_reader_connect(pl_reader_t *r);
int pl_reader_connected(const pl_reader_t *r);
void pl_reader_disconnect(pl_reader_t *r);
const char *pl_reader_error(const pl_reader_t *r);

/* Sends XREADGROUP ... COUNT count [BLOCK block_ms] STREAMS stream from,
 * where from is ">" for new entries (blocking) or an ID to re-read this
 * consumer's own pending entries after it (not blocking). The reply is
 * collected by pl_reader_recv. Returns 0 or -1. */
int pl_reader_send_read(pl_reader_t *r, const char *from, int64_t count, int64_t block_ms);
/* Waits for the reply of the outstanding read into *b (cleared first;
 * b->n == 0 when nothing came). Returns 0 or -1. */
int pl_reader_recv(pl_reader_t *r, pl_arch_batch_t *b);
int pl_reader_outstanding(const pl_reader_t *r);

/* XAUTOCLAIM stream group consumer min_idle cursor COUNT count: takes over
 * entries other consumers left pending for min_idle ms. cursor is updated
 * in place ("0-0" once the whole pending list was scanned). IDs of
 * entries that no longer exist are returned in *b with fields == NULL. */
int pl_reader_autoclaim(pl_reader_t *r, int64_t min_idle, char *cursor, size_t cursor_len,
                        int64_t count, pl_arch_batch_t *b);

/* A dead letter: an entry moved to STREAM:dead with the reason. */
typedef struct pl_arch_dead {
    const pl_arch_entry_t *entry;
    const char *reason;
} pl_arch_dead_t;

/* Copies dead[0..ndead) to the dead-letter stream, then XACKs ids[0..n),
 * pipelined on the control connection. Returns 0 or -1. */
int pl_reader_ack(pl_reader_t *r, const pl_arch_bytes_t *ids, size_t n, const pl_arch_dead_t *dead,
                  size_t ndead);

/* Raises the rooms' archived markers over the runs marks[0..n) (from
 * pl_arch_marks), one EVAL per PL_ARCH_MARK_ROOMS_PER_CALL rooms, pipelined
 * on the control connection (see marks.h). A script error is logged and
 * does not fail the call: the marker then stays behind, which only makes
 * gateways keep more in Redis. Call after COMMIT and before the XACK.
 * Returns 0 or -1. */
int pl_reader_mark_archived(pl_reader_t *r, const pl_arch_mark_t *marks, size_t n);

/* Computes the smallest ID any group on the stream may still need (the
 * oldest pending entry, or the one after the last delivered) and XTRIMs
 * MINID to it; fills *st. Returns entries trimmed, or -1. */
long long pl_reader_trim(pl_reader_t *r, pl_arch_group_stats_t *st);

/* Removes this consumer from the group if it holds no pending entries
 * (host-pid names would otherwise pile up across restarts). Call only when
 * nothing is being read any more. Returns 1 if removed, 0 if kept, -1. */
int pl_reader_forget_consumer(pl_reader_t *r);

/* Fills *st for this group without trimming. Returns 0 or -1. */
int pl_reader_stats(pl_reader_t *r, pl_arch_group_stats_t *st);

#endif
