/*
 * A small string-keyed hash map: chained, power-of-two buckets, keys
 * copied and owned by the map, values borrowed. Not thread-safe; each
 * worker keeps its own maps.
 */
#ifndef PL_MAP_H
#define PL_MAP_H

#include <stddef.h>

typedef struct pl_map_entry {
    struct pl_map_entry *next;
    char *key; /* owned by the map */
    void *val;
} pl_map_entry_t;

typedef struct pl_map {
    pl_map_entry_t **b;
    size_t nb, n;
} pl_map_t;

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

#endif
