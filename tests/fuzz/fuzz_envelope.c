/*
 * libFuzzer target for the msgpack channel envelope (common/envelope.c):
 * every worker parses whatever arrives on a room channel, so no input may
 * crash it, read outside the buffer or make msgpack-c allocate for items
 * that are not there (libFuzzer's -malloc_limit_mb, = -rss_limit_mb, fails
 * the run on one absurd allocation). What parses must survive a round trip
 * through the packer, and no strict prefix of it may parse (msgpack objects
 * delimit themselves, so a cut envelope is always incomplete). The input is
 * also read as the fields of an envelope to pack, so the packer sees
 * arbitrary lengths and integers too.
 */
#include "envelope.h"
#include "util.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int in(const char *p, size_t n, const char *buf, size_t size)
{
    return p >= buf && n <= size && (size_t)(p - buf) <= size - n;
}

static int same_str(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void same(const pl_envelope_t *a, const pl_envelope_t *b)
{
    assert(a->kind == b->kind);
    assert(same_str(a->room, a->room_len, b->room, b->room_len));
    assert(same_str(a->node, a->node_len, b->node, b->node_len));
    assert(same_str(a->json, a->json_len, b->json, b->json_len));
    assert(a->worker == b->worker && a->conn == b->conn && a->seq == b->seq);
}

/* Packs e, parses the result (must succeed and give e back), packs that
 * again (must give the same bytes). */
static void round_trip(const pl_envelope_t *e)
{
    size_t n1, n2;
    char *p1 = pl_envelope_pack(e, &n1);
    pl_envelope_t back;
    assert(pl_envelope_parse(p1, n1, &back) == 0);
    same(e, &back);
    char *p2 = pl_envelope_pack(&back, &n2);
    assert(n1 == n2 && memcmp(p1, p2, n1) == 0);
    free(p2);
    free(p1);
}

static uint64_t take_u64(const uint8_t **p, size_t *n)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *n > 0; i++, (*p)++, (*n)--)
        v = (v << 8) | **p;
    return v;
}

static size_t take_len(const uint8_t **p, size_t *n)
{
    size_t len = 0;
    if (*n >= 2) {
        len = ((size_t)(*p)[0] << 8 | (*p)[1]) % (*n - 1);
        *p += 2;
        *n -= 2;
    }
    return len;
}

/* The input as envelope fields: kind, worker, conn, seq, then three
 * length-prefixed strings (room, node, json); the packer must accept any
 * value the parser could hand out. */
static void pack_fields(const uint8_t *p, size_t n)
{
    if (n < 1)
        return;
    pl_envelope_t e;
    memset(&e, 0, sizeof(e));
    e.kind = (pl_env_kind_t)(p[0] % 3);
    p++;
    n--;
    e.worker = (int64_t)take_u64(&p, &n);
    e.conn = take_u64(&p, &n) & (uint64_t)INT64_MAX; /* parse refuses conn < 0 */
    e.seq = (int64_t)(take_u64(&p, &n) & (uint64_t)INT64_MAX);
    const char **s[] = {&e.room, &e.node, &e.json};
    size_t *l[] = {&e.room_len, &e.node_len, &e.json_len};
    for (int i = 0; i < 3; i++) {
        *l[i] = i < 2 ? take_len(&p, &n) : n;
        *s[i] = (const char *)p;
        p += *l[i];
        n -= *l[i];
    }
    round_trip(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, exactly size bytes, so ASan catches any overread */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    pl_envelope_t e;
    int r = pl_envelope_parse(buf, size, &e);
    assert(r == 0 || r == -1);
    if (r == 0) {
        assert((unsigned)e.kind < 3);
        assert(in(e.room, e.room_len, buf, size));
        assert(in(e.node, e.node_len, buf, size));
        assert(in(e.json, e.json_len, buf, size));
        assert(e.seq >= 0 && e.conn <= (uint64_t)INT64_MAX);
        round_trip(&e);
        /* every prefix of a small one, about 64 of a big one */
        pl_envelope_t cut;
        for (size_t k = size - 1, step = size / 64 + 1;; k = k >= step ? k - step : 0) {
            assert(pl_envelope_parse(buf, k, &cut) == -1);
            if (k == 0)
                break;
        }
    }
    free(buf);
    pack_fields(data, size);
    return 0;
}
