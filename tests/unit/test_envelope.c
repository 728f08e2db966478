/*
 * envelope.c: round trip, the exact layout the send script's cmsgpack
 * produces, and malformed input rejected without crashing.
 */
#include "envelope.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static pl_envelope_t sample(void)
{
    pl_envelope_t e = {
        .kind = PL_ENV_MSG,
        .room = "lobby",
        .room_len = 5,
        .node = "node-a",
        .node_len = 6,
        .worker = 3,
        .conn = 123456789,
        .seq = 42,
        .json = "{\"ev\":\"msg\"}",
        .json_len = 12,
    };
    return e;
}

static void test_roundtrip(void)
{
    pl_envelope_t e = sample(), d;
    size_t n;
    char *buf = pl_envelope_pack(&e, &n);
    CU_ASSERT_EQUAL_FATAL(pl_envelope_parse(buf, n, &d), 0);
    CU_ASSERT_EQUAL(d.kind, PL_ENV_MSG);
    CU_ASSERT_EQUAL(d.room_len, 5);
    CU_ASSERT_NSTRING_EQUAL(d.room, "lobby", 5);
    CU_ASSERT_NSTRING_EQUAL(d.node, "node-a", 6);
    CU_ASSERT_EQUAL(d.worker, 3);
    CU_ASSERT_EQUAL(d.conn, 123456789);
    CU_ASSERT_EQUAL(d.seq, 42);
    CU_ASSERT_EQUAL(d.json_len, 12);
    CU_ASSERT_NSTRING_EQUAL(d.json, "{\"ev\":\"msg\"}", 12);
    free(buf);
}

static void test_kinds(void)
{
    pl_envelope_t e = sample(), d;
    for (int k = PL_ENV_MSG; k <= PL_ENV_TYPING; k++) {
        e.kind = (pl_env_kind_t)k;
        e.worker = -1;
        e.conn = 0;
        e.node_len = 0;
        size_t n;
        char *buf = pl_envelope_pack(&e, &n);
        CU_ASSERT_EQUAL(pl_envelope_parse(buf, n, &d), 0);
        CU_ASSERT_EQUAL(d.kind, k);
        CU_ASSERT_EQUAL(d.worker, -1);
        CU_ASSERT_EQUAL(d.node_len, 0);
        free(buf);
    }
    CU_ASSERT_STRING_EQUAL(pl_envelope_kind_name(PL_ENV_PRESENCE), "presence");
}

/* What Redis's cmsgpack.pack({1,'msg','r','n',0,7,5,'{}'}) emits: a
 * fixarray of 8 with fixstr strings and positive fixints. */
static void test_cmsgpack_bytes(void)
{
    static const unsigned char b[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1, 'r',
                                      0xa1, 'n',  0x00, 0x07, 0x05, 0xa2, '{',  '}'};
    pl_envelope_t d;
    CU_ASSERT_EQUAL_FATAL(pl_envelope_parse(b, sizeof(b), &d), 0);
    CU_ASSERT_EQUAL(d.seq, 5);
    CU_ASSERT_EQUAL(d.conn, 7);
    CU_ASSERT_EQUAL(d.json_len, 2);
    /* a float64 seq (a Lua number packed as double) is accepted when integral */
    static const unsigned char f[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1, 'r',
                                      0xa1, 'n',  0x00, 0x07, 0xcb, 0x40, 0x14, 0,
                                      0,    0,    0,    0,    0,    0xa2, '{',  '}'};
    CU_ASSERT_EQUAL_FATAL(pl_envelope_parse(f, sizeof(f), &d), 0);
    CU_ASSERT_EQUAL(d.seq, 5);
}

static void test_malformed(void)
{
    pl_envelope_t d;
    static const unsigned char wrong_version[] = {0x98, 0x02, 0xa3, 'm',  's',  'g',  0xa1, 'r',
                                                  0xa1, 'n',  0x00, 0x07, 0x05, 0xa2, '{',  '}'};
    static const unsigned char wrong_kind[] = {0x98, 0x01, 0xa3, 'x',  's',  'g',  0xa1, 'r',
                                               0xa1, 'n',  0x00, 0x07, 0x05, 0xa2, '{',  '}'};
    static const unsigned char short_array[] = {0x97, 0x01, 0xa3, 'm',  's',  'g', 0xa1,
                                                'r',  0xa1, 'n',  0x00, 0x07, 0x05};
    static const unsigned char neg_seq[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1, 'r',
                                            0xa1, 'n',  0x00, 0x07, 0xff, 0xa2, '{',  '}'};
    static const unsigned char not_array[] = {0x81, 0xa1, 'a', 0x01};
    static const unsigned char int_json[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1,
                                             'r',  0xa1, 'n',  0x00, 0x07, 0x05, 0x05};
    CU_ASSERT_EQUAL(pl_envelope_parse(wrong_version, sizeof(wrong_version), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(wrong_kind, sizeof(wrong_kind), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(short_array, sizeof(short_array), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(neg_seq, sizeof(neg_seq), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(not_array, sizeof(not_array), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(int_json, sizeof(int_json), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse("", 0, &d), -1);

    /* every truncation of a valid envelope fails cleanly, and trailing bytes too */
    pl_envelope_t e = sample();
    size_t n;
    char *buf = pl_envelope_pack(&e, &n);
    for (size_t i = 0; i < n; i++) {
        char *cut = malloc(i + 1);
        memcpy(cut, buf, i);
        CU_ASSERT_EQUAL(pl_envelope_parse(cut, i, &d), -1);
        free(cut);
    }
    char *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0x00;
    CU_ASSERT_EQUAL(pl_envelope_parse(longer, n + 1, &d), -1);
    free(longer);
    /* flipping bytes never crashes */
    for (size_t i = 0; i < n; i++) {
        for (int v = 0; v < 256; v += 17) {
            char *m = malloc(n);
            memcpy(m, buf, n);
            m[i] = (char)v;
            (void)pl_envelope_parse(m, n, &d);
            free(m);
        }
    }
    free(buf);
}

/* Containers declaring more items than there are bytes are refused before
 * msgpack-c would allocate for them. */
static void test_huge_counts(void)
{
    pl_envelope_t d;
    static const unsigned char arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char map32[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1, 'r',  0xa1,
                                          'n',  0x00, 0x07, 0x05, 0xdf, 0x7f, 0xff, 0xff, 0xff};
    static const unsigned char str32[] = {0x98, 0x01, 0xa3, 'm',  's',  'g',  0xa1, 'r',  0xa1, 'n',
                                          0x00, 0x07, 0x05, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    CU_ASSERT_EQUAL(pl_envelope_parse(arr32, sizeof(arr32), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(map32, sizeof(map32), &d), -1);
    CU_ASSERT_EQUAL(pl_envelope_parse(str32, sizeof(str32), &d), -1);
    /* array16 of 8 is a valid header too */
    static const unsigned char a16[] = {0xdc, 0x00, 0x08, 0x01, 0xa3, 'm',  's',  'g', 0xa1,
                                        'r',  0xa1, 'n',  0x00, 0x07, 0x05, 0xa2, '{', '}'};
    CU_ASSERT_EQUAL(pl_envelope_parse(a16, sizeof(a16), &d), 0);
}

PL_UNIT_SUITE(envelope, PL_TEST(test_huge_counts), PL_TEST(test_roundtrip), PL_TEST(test_kinds),
              PL_TEST(test_cmsgpack_bytes), PL_TEST(test_malformed))
