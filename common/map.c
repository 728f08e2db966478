/*
 * A string-keyed hash map (see map.h): chained buckets, power-of-two
 * sizes, keys copied in, SipHash-1-3 under a per-process random seed.
 * Used for every per-worker index keyed by a name.
 */
#include "map.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* The process seed (one worker per process, so a plain static). */
static uint8_t process_seed[PL_SIPHASH_KEY_LEN];
static int seeded;

void pl_map_reseed(void)
{
    pl_random_bytes(process_seed, sizeof(process_seed));
    seeded = 1;
}

void pl_map_seed(const uint8_t seed[PL_SIPHASH_KEY_LEN])
{
    memcpy(process_seed, seed, sizeof(process_seed));
    seeded = 1;
}

uint64_t pl_map_hash(const pl_map_t *m, const char *key)
{
    return pl_siphash13(m->seed, key, strlen(key));
}

void pl_map_init(pl_map_t *m)
{
    if (!seeded)
        pl_map_reseed();
    memcpy(m->seed, process_seed, sizeof(m->seed));
    m->nb = 16;
    m->n = 0;
    m->b = pl_xcalloc(m->nb, sizeof(*m->b));
}

void pl_map_clear(pl_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        pl_map_entry_t *e = m->b[i];
        while (e) {
            pl_map_entry_t *next = e->next;
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}

void *pl_map_get(const pl_map_t *m, const char *key)
{
    for (pl_map_entry_t *e = m->b[pl_map_hash(m, key) & (m->nb - 1)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static void grow(pl_map_t *m)
{
    size_t nb = m->nb * 2;
    pl_map_entry_t **b = pl_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < m->nb; i++) {
        pl_map_entry_t *e = m->b[i];
        while (e) {
            pl_map_entry_t *next = e->next;
            size_t j = pl_map_hash(m, e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

void *pl_map_put(pl_map_t *m, const char *key, void *val)
{
    size_t i = pl_map_hash(m, key) & (m->nb - 1);
    for (pl_map_entry_t *e = m->b[i]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            void *old = e->val;
            e->val = val;
            return old;
        }
    pl_map_entry_t *e = pl_xmalloc(sizeof(*e));
    e->key = pl_xstrdup(key);
    e->val = val;
    e->next = m->b[i];
    m->b[i] = e;
    if (++m->n > m->nb)
        grow(m);
    return NULL;
}

void *pl_map_del(pl_map_t *m, const char *key)
{
    pl_map_entry_t **pp = &m->b[pl_map_hash(m, key) & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0) {
            pl_map_entry_t *e = *pp;
            void *val = e->val;
            *pp = e->next;
            free(e->key);
            free(e);
            m->n--;
            return val;
        }
    return NULL;
}

pl_map_entry_t *pl_map_first(const pl_map_t *m, size_t *i)
{
    for (*i = 0; *i < m->nb; (*i)++)
        if (m->b[*i])
            return m->b[*i];
    return NULL;
}

pl_map_entry_t *pl_map_next(const pl_map_t *m, pl_map_entry_t *e, size_t *i)
{
    if (e->next)
        return e->next;
    for ((*i)++; *i < m->nb; (*i)++)
        if (m->b[*i])
            return m->b[*i];
    return NULL;
}
