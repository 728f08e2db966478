/*
 * The rooms' archived markers (docs/protocol.md 3.4): after a batch
 * commits, each room's marker "parley:{<room>}:archived" is raised to the
 * highest seq below which every seq is in MySQL, so gateways may drop
 * those messages from Redis. Runs that do not join the marker yet (a batch
 * committed by another writer before an older one) wait in
 * "parley:{<room>}:archived:runs" until the gap closes.
 *
 * This file computes the runs from a committed batch and builds the EVAL
 * that raises them (script text included); reader.c sends it. Pure.
 */
#ifndef PL_ARCH_MARKS_H
#define PL_ARCH_MARKS_H

#include "writer.h"

#include <stddef.h>
#include <stdint.h>

/* A room's run of consecutive seqs [lo, hi] now in MySQL; room aliases the
 * batch's row. */
typedef struct pl_arch_mark {
    pl_arch_bytes_t room;
    uint64_t lo, hi;
} pl_arch_mark_t;

/* The runs of rows[0..n) stored in MySQL by a commit (status
 * ROW_STORED), sorted by room, then seq; consecutive seqs of a room merge
 * into one run. A ROW_CONFLICT row is not a run although its key is
 * taken: its message is only in Redis (and the dead letters), and a
 * marker raised over it would let the gateways trim that only copy, so
 * the room's marker stays below it. out must have room for n. Returns the
 * number of runs. */
size_t pl_arch_marks(const pl_arch_row_t *rows, const uint8_t *status, size_t n,
                     pl_arch_mark_t *out);

/* Rooms per EVAL: one call per room made the marker cost almost half the
 * archiver's throughput (1,000 rooms in a batch); one call per batch could
 * hold Redis for milliseconds. */
#define PL_ARCH_MARK_ROOMS_PER_CALL 100

/* One EVAL raising the markers of a group of whole rooms, as an argv for
 * redisAppendCommandArgv: "EVAL" script numkeys, then per room its marker
 * key and its runs key, then per room the number of runs and lo, hi of
 * each. Only ever raises a marker, and only over seqs all in MySQL; a
 * missing marker is taken as lo - 1 of the room's lowest run (the gateway
 * creates it with the seq key, so that only happens for rooms older than
 * it); the marker's TTL is kept. */
typedef struct pl_arch_mark_cmd {
    size_t argc;
    const char **argv; /* point into the script text and into keys/nums */
    size_t *lens;
    char *keys; /* storage for the key names */
    char *nums; /* storage for the numbers */
} pl_arch_mark_cmd_t;

/* Builds into *c the EVAL for the first rooms of marks[0..n) (sorted as
 * pl_arch_marks leaves them), at most PL_ARCH_MARK_ROOMS_PER_CALL of them,
 * each with all its runs. Returns how many marks it covers: the caller
 * sends it, frees it and continues after them. n must be > 0. */
size_t pl_arch_mark_cmd(pl_arch_mark_cmd_t *c, const pl_arch_mark_t *marks, size_t n);
void pl_arch_mark_cmd_free(pl_arch_mark_cmd_t *c);

#endif
