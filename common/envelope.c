/*
 * msgpack envelope (see envelope.h): the one format every worker of every
 * node agrees on for channel payloads. The send script packs the same
 * array with Redis's cmsgpack, so both encoders must stay in step.
 */
#include "envelope.h"
#include "util.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"msg", "presence", "typing"};

const char *pl_envelope_kind_name(pl_env_kind_t kind)
{
    return (unsigned)kind < PL_ARRAY_LEN(kind_names) ? kind_names[kind] : "?";
}

static int get_str(const msgpack_object *o, const char **p, size_t *n)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
        return 0;
    }
    return -1;
}

static int get_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX)
            return -1;
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    /* Lua numbers are doubles; cmsgpack packs integral ones as integers,
     * but accept an integral float64 rather than drop a message. */
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32) {
        double d = o->via.f64;
        if (d != d || d < -9.0e15 || d > 9.0e15 || (double)(int64_t)d != d)
            return -1;
        *v = (int64_t)d;
        return 0;
    }
    return -1;
}

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Bytes taken by the msgpack object at p, or 0 if it is truncated, too
 * deep, or declares more container items than bytes remain. msgpack-c
 * allocates a container's items before reading them, so without this
 * check a 5-byte "array of 2^32 items" would ask for tens of gigabytes. */
static size_t scan(const uint8_t *p, size_t n, int depth)
{
    if (n == 0 || depth > 8)
        return 0;
    uint8_t b = p[0];
    size_t head = 1, body = 0, items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 1;
    if (b >= 0x80 && b <= 0x8f)
        items = 2u * (b & 0x0f);
    else if (b >= 0x90 && b <= 0x9f)
        items = b & 0x0f;
    else if (b >= 0xa0 && b <= 0xbf)
        body = b & 0x1f;
    else {
        switch (b) {
        case 0xc4:
        case 0xd9:
            head = 2;
            break;
        case 0xc5:
        case 0xda:
            head = 3;
            break;
        case 0xc6:
        case 0xdb:
            head = 5;
            break;
        case 0xc7:
            head = 3;
            break;
        case 0xc8:
            head = 4;
            break;
        case 0xc9:
            head = 6;
            break;
        case 0xca:
            return n >= 5 ? 5 : 0;
        case 0xcb:
            return n >= 9 ? 9 : 0;
        case 0xcc:
        case 0xd0:
            return n >= 2 ? 2 : 0;
        case 0xcd:
        case 0xd1:
            return n >= 3 ? 3 : 0;
        case 0xce:
        case 0xd2:
            return n >= 5 ? 5 : 0;
        case 0xcf:
        case 0xd3:
            return n >= 9 ? 9 : 0;
        case 0xd4:
            return n >= 3 ? 3 : 0;
        case 0xd5:
            return n >= 4 ? 4 : 0;
        case 0xd6:
            return n >= 6 ? 6 : 0;
        case 0xd7:
            return n >= 10 ? 10 : 0;
        case 0xd8:
            return n >= 18 ? 18 : 0;
        case 0xdc:
            head = 3;
            break;
        case 0xdd:
            head = 5;
            break;
        case 0xde:
            head = 3;
            break;
        case 0xdf:
            head = 5;
            break;
        default:
            return 0; /* 0xc1: never used */
        }
        if (n < head)
            return 0;
        if (b == 0xc4 || b == 0xd9)
            body = p[1];
        else if (b == 0xc5 || b == 0xda || b == 0xc8)
            body = be(p + 1, 2);
        else if (b == 0xc6 || b == 0xdb || b == 0xc9)
            body = be(p + 1, 4);
        else if (b == 0xc7)
            body = p[1];
        else if (b == 0xdc)
            items = be(p + 1, 2);
        else if (b == 0xdd)
            items = be(p + 1, 4);
        else if (b == 0xde)
            items = 2u * be(p + 1, 2);
        else if (b == 0xdf)
            items = 2u * (size_t)be(p + 1, 4);
    }
    if (n < head || body > n - head)
        return 0;
    if (items == 0)
        return head + body;
    if (items > n - head)
        return 0;
    size_t off = head;
    for (size_t i = 0; i < items; i++) {
        size_t k = scan(p + off, n - off, depth + 1);
        if (k == 0)
            return 0;
        off += k;
    }
    return off;
}

int pl_envelope_parse(const void *buf, size_t len, pl_envelope_t *e)
{
    if (scan(buf, len, 0) != len)
        return -1;

    msgpack_unpacked u;
    size_t off = 0;
    int rc = -1;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        goto out;
    const msgpack_object *a = &u.data;
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 8)
        goto out;
    const msgpack_object *it = a->via.array.ptr;
    int64_t version, worker, conn, seq;
    const char *kind;
    size_t kind_len;
    if (get_int(&it[0], &version) < 0 || version != PL_ENVELOPE_VERSION)
        goto out;
    if (get_str(&it[1], &kind, &kind_len) < 0)
        goto out;
    int k = -1;
    for (size_t i = 0; i < PL_ARRAY_LEN(kind_names); i++)
        if (kind_len == strlen(kind_names[i]) && memcmp(kind, kind_names[i], kind_len) == 0)
            k = (int)i;
    if (k < 0)
        goto out;
    if (get_str(&it[2], &e->room, &e->room_len) < 0 ||
        get_str(&it[3], &e->node, &e->node_len) < 0 || get_int(&it[4], &worker) < 0 ||
        get_int(&it[5], &conn) < 0 || conn < 0 || get_int(&it[6], &seq) < 0 || seq < 0 ||
        get_str(&it[7], &e->json, &e->json_len) < 0)
        goto out;
    e->kind = (pl_env_kind_t)k;
    e->worker = worker;
    e->conn = (uint64_t)conn;
    e->seq = seq;
    rc = 0;
out:
    /* str/bin objects point into buf, not into the zone, so the pointers
     * handed out stay valid after this. */
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

char *pl_envelope_pack(const pl_envelope_t *e, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_int64(&pk, PL_ENVELOPE_VERSION);
    const char *kn = pl_envelope_kind_name(e->kind);
    pack_str(&pk, kn, strlen(kn));
    pack_str(&pk, e->room, e->room_len);
    pack_str(&pk, e->node, e->node_len);
    msgpack_pack_int64(&pk, e->worker);
    msgpack_pack_uint64(&pk, e->conn);
    msgpack_pack_int64(&pk, e->seq);
    pack_str(&pk, e->json, e->json_len);
    *len = sb.size;
    char *out = sb.data; /* ownership moves to the caller */
    if (out == NULL)
        out = pl_xmalloc(1);
    return out;
}
