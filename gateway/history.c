/*
 * History reads from Redis and the seam to the archive (see history.h).
 */
#include "history.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pl_key_room(char *buf, const char *room, const char *what)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:%s", room, what);
}

void pl_key_user(char *buf, const char *user)
{
    snprintf(buf, PL_KEY_MAX, "parley:user:{%s}", user);
}

void pl_key_cid(char *buf, const char *room, const char *user, const char *cid)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:cid:%s:%s", room, user, cid);
}

void pl_history_page_free(pl_history_page_t *page)
{
    for (size_t i = 0; i < page->n; i++)
        free(page->v[i].json);
    free(page->v);
    page->v = NULL;
    page->n = 0;
}

typedef struct hreq {
    pl_history_fn cb;
    void *arg;
    int limit; /* > 0: newest-first reply of limit+1 to reverse; 0: oldest-first range */
} hreq_t;

static void on_zrange(void *arg, redisReply *r)
{
    hreq_t *q = arg;
    pl_history_page_t page = {0};
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        q->cb(q->arg, -1, &page);
        free(q);
        return;
    }
    size_t n = r->elements / 2;
    page.v = pl_xcalloc(n + 1, sizeof(*page.v));
    for (size_t i = 0; i < n; i++) {
        redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
        if (m->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING)
            continue;
        pl_hmsg_t *h = &page.v[page.n++];
        h->seq = strtoll(s->str, NULL, 10);
        h->json = pl_xstrndup(m->str, m->len);
        h->len = m->len;
    }
    if (q->limit > 0) {
        /* newest first, one extra to know whether more exist */
        if (page.n > (size_t)q->limit) {
            page.more = 1;
            free(page.v[page.n - 1].json);
            page.n--;
        }
        for (size_t i = 0; i < page.n / 2; i++) {
            pl_hmsg_t t = page.v[i];
            page.v[i] = page.v[page.n - 1 - i];
            page.v[page.n - 1 - i] = t;
        }
    }
    q->cb(q->arg, 0, &page);
    pl_history_page_free(&page);
    free(q);
}

int pl_history_recent(pl_bus_t *bus, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg)
{
    char key[PL_KEY_MAX], max[32], lim[16];
    pl_key_room(key, room, "recent");
    if (before > 0)
        snprintf(max, sizeof(max), "(%" PRId64, before);
    else
        snprintf(max, sizeof(max), "+inf");
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *argv[] = {"ZREVRANGEBYSCORE", key, max, "-inf", "WITHSCORES", "LIMIT", "0", lim};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    hreq_t *q = pl_xcalloc(1, sizeof(*q));
    q->cb = cb;
    q->arg = arg;
    q->limit = limit;
    if (pl_bus_command(bus, on_zrange, q, 8, argv, lens) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

int pl_history_range(pl_bus_t *bus, const char *room, int64_t after, int64_t upto, pl_history_fn cb,
                     void *arg)
{
    char key[PL_KEY_MAX], min[32], max[32];
    pl_key_room(key, room, "recent");
    snprintf(min, sizeof(min), "(%" PRId64, after);
    if (upto >= 0)
        snprintf(max, sizeof(max), "%" PRId64, upto);
    else
        snprintf(max, sizeof(max), "+inf");
    const char *argv[] = {"ZRANGEBYSCORE", key, min, max, "WITHSCORES"};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    hreq_t *q = pl_xcalloc(1, sizeof(*q));
    q->cb = cb;
    q->arg = arg;
    if (pl_bus_command(bus, on_zrange, q, 5, argv, lens) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

int pl_history_older_needed(const pl_history_page_t *page, int64_t before, int limit,
                            int64_t *older_before, int *older_limit)
{
    if (page->more || page->n >= (size_t)limit)
        return 0; /* Redis had a full page */
    /* The oldest message Redis has, or the request's upper bound when it
     * had none; seqs start at 1, so nothing older exists below 2. */
    int64_t oldest = page->n > 0 ? page->v[0].seq : (before > 0 ? before : INT64_MAX);
    if (oldest <= 1)
        return 0;
    *older_before = oldest;
    *older_limit = limit - (int)page->n;
    return 1;
}

void pl_history_older(const char *room, int64_t before, int limit, pl_history_fn cb, void *arg)
{
    (void)room;
    (void)before;
    (void)limit;
    pl_history_page_t page = {0};
    cb(arg, 0, &page);
}

void pl_history_seq_floor(const char *room, int64_t hint, pl_floor_fn cb, void *arg)
{
    (void)room;
    cb(arg, 0, hint > 0 ? hint : 0);
}
