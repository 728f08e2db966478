/*
 * The node-wide per-address connection counts (see iplimit.h): the shared
 * mapping, its seeded hash, and the probe, insert and delete under one
 * robust process-shared mutex.
 */
#include "iplimit.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct table {
    pthread_mutex_t lock; /* PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST */
    uint64_t key[2];      /* hash seed, from getrandom() in the master */
    uint32_t cap;         /* entries, a power of two */
    uint32_t used;        /* entries with total > 0 */
    uint32_t nblocks;     /* count columns per entry */
    uint32_t esize;       /* bytes per entry */
    uint8_t entries[];    /* cap entries of esize bytes, each a struct entry */
};

/* One address; free when total is 0. */
struct entry {
    pl_addr_t addr;
    uint32_t total; /* sum of col[] */
    uint16_t col[]; /* connections held, per metrics block */
};

static struct table *tab; /* shared, NULL while the limit was never on */
static int my_block = -1; /* this worker's column */

/* ---- SipHash-2-4 (Aumasson, Bernstein), of exactly 16 bytes ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t pl_iplimit_hash(const uint64_t key[2], const pl_addr_t *a)
{
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL, v1 = key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL, v3 = key[1] ^ 0x7465646279746573ULL;
    for (int i = 0; i < 2; i++) {
        uint64_t m = le64(a->b + 8 * i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)16 << 56;
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---- */

static struct entry *at(uint32_t i)
{
    return (struct entry *)(tab->entries + (size_t)i * tab->esize);
}

static uint32_t home(const pl_addr_t *a)
{
    return (uint32_t)pl_iplimit_hash(tab->key, a) & (tab->cap - 1);
}

static void lock(void)
{
    int rc = pthread_mutex_lock(&tab->lock);
    if (rc == EOWNERDEAD) {
        /* A worker died inside a probe. Every write below leaves the
         * table usable at each step (at worst an entry is duplicated by
         * an interrupted shift, or its counts are one off); the master
         * also zeroes the dead worker's column. */
        pl_log_warn("per-ip table: previous holder died, recovering the lock");
        pthread_mutex_consistent(&tab->lock);
    }
}

static void unlock(void)
{
    pthread_mutex_unlock(&tab->lock);
}

/* The entry holding a, or NULL; *slot is where it is or would go. */
static struct entry *find(const pl_addr_t *a, uint32_t *slot)
{
    uint32_t i = home(a);
    for (;;) {
        struct entry *e = at(i);
        if (e->total == 0) {
            *slot = i;
            return NULL;
        }
        if (memcmp(&e->addr, a, sizeof(*a)) == 0) {
            *slot = i;
            return e;
        }
        i = (i + 1) & (tab->cap - 1);
    }
}

/* Frees slot i and shifts later entries of its probe run back into the
 * hole, so lookups never need tombstones. */
static void delete_at(uint32_t i)
{
    uint32_t mask = tab->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        struct entry *e = at(j);
        if (e->total == 0)
            break;
        uint32_t k = home(&e->addr);
        /* e stays if its home lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        memcpy(at(i), e, tab->esize);
        i = j;
    }
    memset(at(i), 0, tab->esize);
    tab->used--;
}

int pl_iplimit_create(size_t capacity, int nblocks)
{
    if (tab != NULL)
        return 0;
    uint32_t cap = 1024;
    while (cap < capacity && cap < (1u << 20))
        cap <<= 1;
    size_t esize = (sizeof(struct entry) + (size_t)nblocks * sizeof(uint16_t) + 3) & ~(size_t)3;
    size_t size = sizeof(struct table) + (size_t)cap * esize;
    /* NORESERVE: pages are only touched as addresses hash onto them */
    void *p =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        pl_log_error("mmap() failed for the per-ip table: %s\tbytes=%zu", strerror(errno), size);
        return -1;
    }
    struct table *t = p;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&t->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    if (getrandom(t->key, sizeof(t->key), 0) != (ssize_t)sizeof(t->key)) {
        /* no entropy source: still unpredictable enough from outside */
        t->key[0] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ pl_mono_ms();
        t->key[1] = (uint64_t)time(NULL) * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)p;
    }
    t->cap = cap;
    t->nblocks = (uint32_t)nblocks;
    t->esize = (uint32_t)esize;
    tab = t;
    pl_log_info("per-ip connection table\taddresses=%u bytes=%zu", cap, size);
    return 0;
}

int pl_iplimit_enabled(void)
{
    return tab != NULL;
}

void pl_iplimit_attach(int block)
{
    my_block = block;
}

enum pl_iplimit_result pl_iplimit_acquire(const pl_addr_t *a, unsigned limit)
{
    if (tab == NULL || my_block < 0 || (uint32_t)my_block >= tab->nblocks)
        return PL_IPLIMIT_FULL;
    enum pl_iplimit_result r = PL_IPLIMIT_OK;
    lock();
    uint32_t i;
    struct entry *e = find(a, &i);
    if (e != NULL) {
        if (e->total >= limit || e->col[my_block] == UINT16_MAX) {
            r = PL_IPLIMIT_OVER;
        } else {
            e->total++;
            e->col[my_block]++;
        }
    } else if (tab->used + 1 > tab->cap / 4 * 3 || limit == 0) {
        r = limit == 0 ? PL_IPLIMIT_OVER : PL_IPLIMIT_FULL;
        static uint64_t last_full_log_ms; /* per worker: one line per 10 s at most */
        uint64_t now = pl_mono_ms();
        if (r == PL_IPLIMIT_FULL && (last_full_log_ms == 0 || now - last_full_log_ms >= 10000)) {
            last_full_log_ms = now;
            pl_log_warn("per-ip table full: new addresses are let in uncounted\taddresses=%u",
                        tab->used);
        }
    } else {
        e = at(i);
        e->addr = *a;
        e->col[my_block] = 1;
        e->total = 1; /* written last: total != 0 marks the entry used */
        tab->used++;
    }
    unlock();
    return r;
}

void pl_iplimit_release(const pl_addr_t *a)
{
    if (tab == NULL || my_block < 0 || (uint32_t)my_block >= tab->nblocks)
        return;
    lock();
    uint32_t i;
    struct entry *e = find(a, &i);
    if (e != NULL && e->col[my_block] > 0) {
        e->col[my_block]--;
        if (--e->total == 0)
            delete_at(i);
    }
    unlock();
}

unsigned pl_iplimit_count(const pl_addr_t *a)
{
    if (tab == NULL)
        return 0;
    lock();
    uint32_t i;
    struct entry *e = find(a, &i);
    unsigned n = e ? e->total : 0;
    unlock();
    return n;
}

void pl_iplimit_reset_block(int block)
{
    if (tab == NULL || block < 0 || (uint32_t)block >= tab->nblocks)
        return;
    lock();
    /* Zero the column, then rebuild: entries left at 0 must go, and
     * deleting while scanning would move unscanned entries behind us. */
    size_t n = 0;
    uint8_t *keep = pl_xmalloc((size_t)tab->used * tab->esize + 1);
    for (uint32_t i = 0; i < tab->cap; i++) {
        struct entry *e = at(i);
        if (e->total == 0)
            continue;
        e->total -= e->col[block] <= e->total ? e->col[block] : e->total;
        e->col[block] = 0;
        if (e->total > 0 && n < tab->used)
            memcpy(keep + n++ * tab->esize, e, tab->esize);
    }
    memset(tab->entries, 0, (size_t)tab->cap * tab->esize);
    tab->used = 0;
    for (size_t k = 0; k < n; k++) {
        const struct entry *src = (const struct entry *)(keep + k * tab->esize);
        uint32_t i;
        if (find(&src->addr, &i) == NULL) { /* a duplicate left by a dead shifter is dropped */
            memcpy(at(i), src, tab->esize);
            tab->used++;
        }
    }
    free(keep);
    unlock();
}
