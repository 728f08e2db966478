/*
 * A small string-keyed hash map: chained, power-of-two buckets, keys
 * copied and owned by the map, values borrowed. Not thread-safe; each
 * worker keeps its own maps.
 *
 * Keys come from clients (room names, user ids), so the hash is keyed:
 * SipHash-1-3 under a per-process random seed (siphash.h). Without it a
 * client could compute names that all land in one chain offline and make
 * every lookup in that map linear. Each map copies the process seed when
 * it is created, so a later pl_map_reseed never scrambles a live map.
 */
#ifndef PL_MAP_H
#define PL_MAP_H

#include "siphash.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pl_map_entry {
    struct pl_map_entry *next;
    char *key; /* owned by the map */
    void *val;
} pl_map_entry_t;

typedef struct pl_map {
    pl_map_entry_t **b;
    size_t nb, n;
    uint8_t seed[PL_SIPHASH_KEY_LEN]; /* the process seed when the map was created */
} pl_map_t;

/* Draws a new process seed from getrandom (a worker does at start, so no
 * two processes, not even forks of one master, share one); maps created
 * afterwards use it. Without a call the first pl_map_init draws one. */
void pl_map_reseed(void);
/* Sets the process seed (tests). */
void pl_map_seed(const uint8_t seed[PL_SIPHASH_KEY_LEN]);

void pl_map_init(pl_map_t *m);
/* Frees the entries and keys (not the values). */
void pl_map_clear(pl_map_t *m);
void *pl_map_get(const pl_map_t *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *pl_map_put(pl_map_t *m, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *pl_map_del(pl_map_t *m, const char *key);
/* Iteration: for (e = pl_map_first(m, &i); e; e = pl_map_next(m, e, &i));
 * do not insert or delete while iterating. */
pl_map_entry_t *pl_map_first(const pl_map_t *m, size_t *i);
pl_map_entry_t *pl_map_next(const pl_map_t *m, pl_map_entry_t *e, size_t *i);
/* The hash of key in m (which bucket it goes to; exposed for tests). */
uint64_t pl_map_hash(const pl_map_t *m, const char *key);

#endif
