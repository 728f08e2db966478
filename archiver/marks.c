/*
 * Archived-marker runs and the EVAL that raises them (see marks.h).
 */
#include "marks.h"
#include "keys.h"
#include "util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mark_cmp(const void *a, const void *b)
{
    const pl_arch_mark_t *x = a, *y = b;
    size_t n = x->room.n < y->room.n ? x->room.n : y->room.n;
    int c = memcmp(x->room.p, y->room.p, n);
    if (c == 0 && x->room.n != y->room.n)
        c = x->room.n < y->room.n ? -1 : 1;
    if (c == 0)
        c = x->lo < y->lo ? -1 : x->lo > y->lo;
    return c;
}

static int same_room(const pl_arch_mark_t *x, const pl_arch_mark_t *y)
{
    return x->room.n == y->room.n && memcmp(x->room.p, y->room.p, x->room.n) == 0;
}

size_t pl_arch_marks(const pl_arch_row_t *rows, const uint8_t *status, size_t n,
                     pl_arch_mark_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (status[i] == ROW_STORED) /* never a conflict (marks.h) */
            out[k++] = (pl_arch_mark_t){rows[i].room, rows[i].seq, rows[i].seq};
    if (k == 0)
        return 0;
    qsort(out, k, sizeof(*out), mark_cmp);
    size_t m = 0;
    for (size_t i = 1; i < k; i++) {
        if (same_room(&out[m], &out[i]) && out[i].lo <= out[m].hi + 1) {
            if (out[i].hi > out[m].hi)
                out[m].hi = out[i].hi;
        } else {
            out[++m] = out[i];
        }
    }
    return m + 1;
}

/* Raises the markers of several rooms in one call. KEYS: marker1, runs1,
 * marker2, runs2, ... ARGV per room: the number of ranges, then lo, hi for
 * each (sorted by lo). Only ever raises a marker, and only over seqs all
 * in MySQL. The marker's TTL (the gateway's send script gives it the
 * room's) is kept; PTTL and PEXPIRE rather than SET KEEPTTL so that Redis
 * 5 works too. Waiting runs expire after a week untouched. */
static const char mark_lua[] = "local ai = 1\n"
                               "for ki = 1, #KEYS, 2 do\n"
                               "  local k, rk = KEYS[ki], KEYS[ki + 1]\n"
                               "  local cnt = tonumber(ARGV[ai])\n"
                               "  ai = ai + 1\n"
                               "  local cur = redis.call('GET', k)\n"
                               "  local a = tonumber(cur or '')\n"
                               "  if a == nil then a = tonumber(ARGV[ai]) - 1 end\n"
                               "  local start = a\n"
                               "  for i = ai, ai + 2 * cnt - 1, 2 do\n"
                               "    local lo, hi = tonumber(ARGV[i]), tonumber(ARGV[i + 1])\n"
                               "    if lo <= a + 1 then\n"
                               "      if hi > a then a = hi end\n"
                               "    else\n"
                               "      redis.call('ZADD', rk, lo, ARGV[i] .. '-' .. ARGV[i + 1])\n"
                               "      redis.call('PEXPIRE', rk, 604800000)\n"
                               "    end\n"
                               "  end\n"
                               "  ai = ai + 2 * cnt\n"
                               "  while true do\n"
                               "    local r = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')\n"
                               "    if #r == 0 or tonumber(r[2]) > a + 1 then break end\n"
                               "    local hi = tonumber(string.match(r[1], '-(%d+)$'))\n"
                               "    if hi and hi > a then a = hi end\n"
                               "    redis.call('ZREM', rk, r[1])\n"
                               "  end\n"
                               "  if cur == nil or a > start then\n"
                               "    local ttl = redis.call('PTTL', k)\n"
                               "    redis.call('SET', k, string.format('%d', a))\n"
                               "    if ttl > 0 then redis.call('PEXPIRE', k, ttl) end\n"
                               "  end\n"
                               "end\n"
                               "return 1\n";

/* A key holds "parley:{" room "}:archived:runs": a room's bytes are at
 * most 4 per character. */
#define KEY_CAP (PL_ARCH_ROOM_MAX_CHARS * 4 + 64)
#define NUM_CAP 24 /* a uint64 in decimal, with its NUL */

size_t pl_arch_mark_cmd(pl_arch_mark_cmd_t *c, const pl_arch_mark_t *marks, size_t n)
{
    assert(n > 0);
    /* take up to PL_ARCH_MARK_ROOMS_PER_CALL whole rooms */
    size_t end = 0, rooms = 0;
    while (end < n && rooms < PL_ARCH_MARK_ROOMS_PER_CALL) {
        size_t k = end;
        while (k < n && same_room(&marks[end], &marks[k]))
            k++;
        end = k;
        rooms++;
    }
    /* EVAL script numkeys, two keys per room, then a count per room and
     * two numbers per run */
    size_t argc = 3 + 2 * rooms + rooms + 2 * end;
    c->argv = pl_xmalloc(argc * sizeof(*c->argv));
    c->lens = pl_xmalloc(argc * sizeof(*c->lens));
    c->keys = pl_xmalloc(rooms * 2 * KEY_CAP);
    c->nums = pl_xmalloc((1 + rooms + 2 * end) * NUM_CAP);
    size_t a = 0, kr = 0, nu = 0;
#define ARG(s, l) (c->argv[a] = (s), c->lens[a] = (l), a++)
#define NUM(fmt, v)                                                                                \
    do {                                                                                           \
        char *num_ = c->nums + (nu++) * NUM_CAP;                                                   \
        ARG(num_, (size_t)snprintf(num_, NUM_CAP, fmt, v));                                        \
    } while (0)
    ARG("EVAL", 4);
    ARG(mark_lua, sizeof(mark_lua) - 1);
    NUM("%zu", 2 * rooms);
    for (size_t i = 0; i < end;) {
        size_t j = i;
        while (j < end && same_room(&marks[i], &marks[j]))
            j++;
        char *marker = c->keys + (kr++) * KEY_CAP, *runs = c->keys + (kr++) * KEY_CAP;
        pl_key_archived_n(marker, KEY_CAP, marks[i].room.p, marks[i].room.n);
        pl_key_archived_runs_n(runs, KEY_CAP, marks[i].room.p, marks[i].room.n);
        ARG(marker, strlen(marker));
        ARG(runs, strlen(runs));
        i = j;
    }
    for (size_t i = 0; i < end;) {
        size_t j = i;
        while (j < end && same_room(&marks[i], &marks[j]))
            j++;
        NUM("%zu", j - i);
        for (size_t m = i; m < j; m++) {
            NUM("%llu", (unsigned long long)marks[m].lo);
            NUM("%llu", (unsigned long long)marks[m].hi);
        }
        i = j;
    }
#undef NUM
#undef ARG
    assert(a == argc);
    c->argc = a;
    return end;
}

void pl_arch_mark_cmd_free(pl_arch_mark_cmd_t *c)
{
    free(c->argv);
    free(c->lens);
    free(c->keys);
    free(c->nums);
    memset(c, 0, sizeof(*c));
}
