/*
 * max_connections_per_ip: how many connections each client address holds
 * on this node, all workers together. A table in a MAP_SHARED mapping the
 * master creates before forking (like the metrics page), so every worker
 * sees every other's counts.
 *
 * Layout: open addressing (linear probing, backward-shift deletion) keyed
 * by the 16-byte address under a hash seeded from getrandom() in the
 * master, so colliding addresses cannot be computed offline. Each entry
 * keeps one count per metrics block (the process that holds them): when
 * a worker dies without releasing its connections, the master zeroes its
 * column (pl_iplimit_reset_block) and the counts stay exact. One
 * process-shared robust mutex guards the table: every operation is a
 * short probe, and a worker killed while holding it leaves it to the next
 * locker (EOWNERDEAD), not locked forever.
 *
 * Full table (more distinct addresses than it was sized for): a new
 * address is let in uncounted (fail open, logged every 10 s) rather
 * than refused: the per-worker max_connections still bounds it.
 */
#ifndef PL_IPLIMIT_H
#define PL_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define PL_IPLIMIT_MAX 65535 /* largest max_connections_per_ip (counts are 16-bit) */

enum pl_iplimit_result {
    PL_IPLIMIT_OK,   /* counted: release it when the connection closes */
    PL_IPLIMIT_OVER, /* the address already holds limit connections: not counted */
    PL_IPLIMIT_FULL, /* no room for a new address: not counted, let in */
};

/* Master, before forking: maps a table for about capacity addresses and
 * nblocks holders (metrics blocks). Returns 0, or -1 (logged). Called
 * again (a reload that turns the limit on) it keeps the existing table. */
int pl_iplimit_create(size_t capacity, int nblocks);
/* True once created. */
int pl_iplimit_enabled(void);
/* Worker, after fork: its counts go in column block. */
void pl_iplimit_attach(int block);
/* Counts one connection for a if it holds fewer than limit. */
enum pl_iplimit_result pl_iplimit_acquire(const pl_addr_t *a, unsigned limit);
/* Gives back one PL_IPLIMIT_OK acquire of a. */
void pl_iplimit_release(const pl_addr_t *a);
/* Connections a holds now on the node (tests, logs). */
unsigned pl_iplimit_count(const pl_addr_t *a);
/* Master, after the process that used block died: drops its counts. */
void pl_iplimit_reset_block(int block);

/* SipHash-2-4 of the 16-byte address under key (exposed for the tests). */
uint64_t pl_iplimit_hash(const uint64_t key[2], const pl_addr_t *a);

#endif
