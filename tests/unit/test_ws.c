/*
 * ws.c: the RFC 6455 rules the codec enforces, frame by frame. Every frame
 * goes through parse1(), which also feeds it one byte at a time and checks
 * the answer is the same, because the gateway sees frames in arbitrary
 * TCP-sized pieces.
 */
#include "util.h"
#include "ws.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

#define BIG (70000 + 14)
static uint8_t whole[BIG], split[BIG], fbuf[BIG], pbuf[BIG];

/* Different mask keys per frame, so no test depends on one key. */
static uint32_t next_mask(void)
{
    static uint32_t m = 0x37fa213d;
    m = m * 2654435761u + 0x9e3779b9u;
    return m;
}

static size_t mkframe(uint8_t *out, uint8_t op, int fin, const void *payload, size_t n)
{
    return pl_ws_client_frame(out, op, fin, payload, n, next_mask());
}

/*
 * Parses bytes[0..n) with p; a copy of p is fed the same bytes through a
 * growing buffer one byte at a time and must return AGAIN until the same
 * answer, the same frame and the same parser state. f->payload points into
 * a static buffer valid until the next call.
 */
static int parse1(pl_ws_parser_t *p, const uint8_t *bytes, size_t n, pl_ws_frame_t *f, size_t *used)
{
    pl_ws_parser_t p2 = *p;
    pl_ws_frame_t f2;
    size_t c1 = 0, c2 = 0, k;
    int rc, rc2 = PL_AGAIN;

    CU_ASSERT_FATAL(n <= BIG);
    memcpy(whole, bytes, n);
    memcpy(split, bytes, n);
    rc = pl_ws_parse(p, whole, n, f, &c1);
    for (k = 0; k <= n; k++) {
        rc2 = pl_ws_parse(&p2, split, k, &f2, &c2);
        if (rc2 != PL_AGAIN)
            break;
    }
    CU_ASSERT_EQUAL(rc2, rc);
    if (rc == PL_OK && rc2 == PL_OK) {
        CU_ASSERT_EQUAL(c1, c2);
        CU_ASSERT_EQUAL(k, c1); /* done exactly when the last byte arrived */
        CU_ASSERT(c1 <= n);
        CU_ASSERT_EQUAL(f->opcode, f2.opcode);
        CU_ASSERT_EQUAL(f->fin, f2.fin);
        CU_ASSERT_EQUAL(f->msg_opcode, f2.msg_opcode);
        CU_ASSERT_EQUAL(f->len, f2.len);
        CU_ASSERT_EQUAL(f->payload - whole, f2.payload - split);
        CU_ASSERT(memcmp(f->payload, f2.payload, (size_t)f->len) == 0);
        CU_ASSERT_EQUAL(f->close_code, f2.close_code);
        CU_ASSERT_EQUAL(f->reason_len, f2.reason_len);
        CU_ASSERT_EQUAL(p->msg_len, p2.msg_len);
        CU_ASSERT_EQUAL(p->msg_opcode, p2.msg_opcode);
        CU_ASSERT_EQUAL(p->utf8.need, p2.utf8.need);
        if (used)
            *used = c1;
    }
    return rc;
}

/* Builds one client frame and parses it with p. */
static int frame1(pl_ws_parser_t *p, uint8_t op, int fin, const void *payload, size_t n,
                  pl_ws_frame_t *f)
{
    size_t len = mkframe(fbuf, op, fin, payload, n);
    size_t used = 0;
    int rc = parse1(p, fbuf, len, f, &used);
    if (rc == PL_OK)
        CU_ASSERT_EQUAL(used, len);
    return rc;
}

/* Parses raw header bytes given as a string literal. */
#define RAW(p, lit, f) parse1((p), (const uint8_t *)(lit), sizeof(lit) - 1, (f), NULL)

static void test_accept_key_rfc_example(void)
{
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    CU_ASSERT_EQUAL_FATAL(pl_ws_accept_key(key, strlen(key), out), 0);
    CU_ASSERT_STRING_EQUAL(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_key_rejects_bad_keys(void)
{
    char out[29];
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 chars */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* 18 bytes */
        "dGhlIHNhbXBsZSBub25j*Q==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25jZ===",  /* padding inside the data */
        " dGhlIHNhbXBsZSBub25jZQ=",  /* whitespace is the HTTP parser's job */
        "dGhlIHNhbXBsZSBub25jZQ-=",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        CU_ASSERT_EQUAL(pl_ws_accept_key(bad[i], strlen(bad[i]), out), -1);
    /* keylen is honoured: a valid key followed by junk is refused. */
    CU_ASSERT_EQUAL(pl_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", 25, out), -1);
    CU_ASSERT_EQUAL(pl_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", 24, out), 0);
}

static void test_rfc_masked_hello(void)
{
    /* RFC 6455 5.7: a single-frame masked text message. */
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    size_t used;
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL_FATAL(parse1(&p, hello, sizeof(hello), &f, &used), PL_OK);
    CU_ASSERT_EQUAL(used, sizeof(hello));
    CU_ASSERT_EQUAL(f.opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(f.fin, 1);
    CU_ASSERT_EQUAL(f.len, 5);
    CU_ASSERT(memcmp(f.payload, "Hello", 5) == 0);

    /* Our encoder produces the same bytes for the same key. */
    uint8_t enc[32];
    CU_ASSERT_EQUAL(pl_ws_client_frame(enc, PL_WS_TEXT, 1, (const uint8_t *)"Hello", 5, 0x37fa213d),
                    sizeof(hello));
    CU_ASSERT(memcmp(enc, hello, sizeof(hello)) == 0);
}

static void test_unmasked_frame_is_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);
    /* RFC 6455 5.7 unmasked "Hello": fine from a server, not from a client. */
    CU_ASSERT_EQUAL(RAW(&p, "\x81\x05Hello", &f), PL_WS_CLOSE_PROTOCOL);
    /* Decided from the header alone. */
    CU_ASSERT_EQUAL(RAW(&p, "\x82\x7e", &f), PL_WS_CLOSE_PROTOCOL);
}

static void test_reserved_bits_are_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    static const uint8_t rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < PL_ARRAY_LEN(rsv); i++) {
        size_t n = mkframe(fbuf, PL_WS_TEXT, 1, "hi", 2);
        fbuf[0] |= rsv[i];
        pl_ws_parser_init(&p, 1000);
        CU_ASSERT_EQUAL(parse1(&p, fbuf, n, &f, NULL), PL_WS_CLOSE_PROTOCOL);
    }
    /* Also on a control frame. */
    size_t n = mkframe(fbuf, PL_WS_PING, 1, "", 0);
    fbuf[0] |= 0x40;
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(parse1(&p, fbuf, n, &f, NULL), PL_WS_CLOSE_PROTOCOL);
}

static void test_reserved_opcodes_are_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < PL_ARRAY_LEN(ops); i++) {
        pl_ws_parser_init(&p, 1000);
        CU_ASSERT_EQUAL(frame1(&p, ops[i], 1, "x", 1, &f), PL_WS_CLOSE_PROTOCOL);
    }
}

static void test_control_frame_rules(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    uint8_t pl[126];
    memset(pl, 'p', sizeof(pl));

    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_PING, 1, pl, 125, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_PING);
    CU_ASSERT_EQUAL(f.len, 125);
    CU_ASSERT_EQUAL(f.msg_opcode, 0);
    CU_ASSERT(memcmp(f.payload, pl, 125) == 0);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_PONG, 1, "", 0, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_PONG);
    CU_ASSERT_EQUAL(f.len, 0);

    /* > 125 bytes: refused from the two header bytes (16-bit form). */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_PING, 1, pl, 126, &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(RAW(&p, "\x89\xfe", &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(RAW(&p, "\x88\xff", &f), PL_WS_CLOSE_PROTOCOL);
    /* Fragmented control frames. */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_PING, 0, "a", 1, &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_PONG, 0, "", 0, &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 0, "\x03\xe8", 2, &f), PL_WS_CLOSE_PROTOCOL);
}

static void test_payload_lengths_16_and_64_bit(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    static const size_t sizes[] = {0, 1, 125, 126, 127, 1000, 65535, 65536, 70000};
    for (size_t i = 0; i < 70000; i++)
        pbuf[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < PL_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i], used = 0;
        size_t flen = mkframe(fbuf, PL_WS_BINARY, 1, pbuf, n);
        size_t hlen = n < 126 ? 2 : n <= 65535 ? 4 : 10;
        CU_ASSERT_EQUAL(flen, hlen + 4 + n);
        pl_ws_parser_init(&p, 1 << 20);
        CU_ASSERT_EQUAL_FATAL(parse1(&p, fbuf, flen, &f, &used), PL_OK);
        CU_ASSERT_EQUAL(used, flen);
        CU_ASSERT_EQUAL(f.len, n);
        CU_ASSERT_EQUAL(f.payload - whole, (ptrdiff_t)(hlen + 4));
        CU_ASSERT(memcmp(f.payload, pbuf, n) == 0);
    }
}

static void test_non_minimal_length_is_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1 << 20);
    /* 5 in the 16-bit form, 200 and 65535 in the 64-bit form. */
    CU_ASSERT_EQUAL(RAW(&p, "\x82\xfe\x00\x05", &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(RAW(&p, "\x82\xff\x00\x00\x00\x00\x00\x00\x00\xc8", &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(RAW(&p, "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff", &f), PL_WS_CLOSE_PROTOCOL);
    /* Most significant bit of the 64-bit length set. */
    CU_ASSERT_EQUAL(RAW(&p, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", &f), PL_WS_CLOSE_PROTOCOL);
}

static void test_size_limit_from_header(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    uint8_t a[600];
    memset(a, 'a', sizeof(a));

    /* 1 TiB declared, only the 10 header bytes here: refused at once. */
    pl_ws_parser_init(&p, 65536);
    CU_ASSERT_EQUAL(RAW(&p, "\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00", &f), PL_WS_CLOSE_TOO_BIG);
    CU_ASSERT_EQUAL(RAW(&p, "\x81\xff\x7f\xff\xff\xff\xff\xff\xff\xff", &f), PL_WS_CLOSE_TOO_BIG);
    /* 16-bit form, 4 header bytes. */
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(RAW(&p, "\x81\xfe\x03\xe9", &f), PL_WS_CLOSE_TOO_BIG);
    CU_ASSERT_EQUAL(RAW(&p, "\x81\xfe\x03\xe8", &f), PL_AGAIN); /* 1000 is allowed */

    /* Exactly the limit in one frame is fine. */
    memset(pbuf, 'b', 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, pbuf, 1000, &f), PL_OK);

    /* Across fragments: 600 + 600 > 1000, refused on the second header. */
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_TEXT, 0, a, 600, &f), PL_OK);
    CU_ASSERT_EQUAL(p.msg_len, 600);
    CU_ASSERT_EQUAL(RAW(&p, "\x80\xfe\x02\x58", &f), PL_WS_CLOSE_TOO_BIG);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, a, 600, &f), PL_WS_CLOSE_TOO_BIG);
    /* Control frames do not count; 400 more does fit. */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_PING, 1, a, 125, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, a, 400, &f), PL_OK);
    CU_ASSERT_EQUAL(p.msg_len, 0);
    /* The count starts again with the next message. */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_BINARY, 0, a, 600, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, a, 401, &f), PL_WS_CLOSE_TOO_BIG);
}

static void test_incomplete_frames_are_again(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    size_t used = 99;
    pl_ws_parser_init(&p, 1000);
    size_t n = mkframe(fbuf, PL_WS_TEXT, 0, "abcdef", 6);
    for (size_t k = 0; k < n; k++) {
        CU_ASSERT_EQUAL(pl_ws_parse(&p, fbuf, k, &f, &used), PL_AGAIN);
        CU_ASSERT_EQUAL(p.msg_opcode, 0); /* nothing changes until the frame is whole */
        CU_ASSERT_EQUAL(p.msg_len, 0);
    }
    CU_ASSERT_EQUAL(used, 99);
    CU_ASSERT_EQUAL(pl_ws_parse(&p, fbuf, n, &f, &used), PL_OK);
    CU_ASSERT_EQUAL(used, n);
}

static void test_again_does_not_feed_utf8_twice(void)
{
    /* The conn re-calls parse on a growing buffer; a text frame whose
     * payload trickles in must reach the validator exactly once. */
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    size_t used = 0;
    pl_ws_parser_init(&p, 1000);
    size_t n = mkframe(fbuf, PL_WS_TEXT, 0, "ab\xf0\x9f", 4);
    for (size_t k = 0; k < n; k++) {
        CU_ASSERT_EQUAL(pl_ws_parse(&p, fbuf, k, &f, &used), PL_AGAIN);
        CU_ASSERT_EQUAL(p.utf8.need, 0);
    }
    CU_ASSERT_EQUAL_FATAL(pl_ws_parse(&p, fbuf, n, &f, &used), PL_OK);
    CU_ASSERT_EQUAL(p.utf8.need, 2);
    n = mkframe(fbuf, PL_WS_CONT, 1, "\x98\x80", 2);
    for (size_t k = 0; k < n; k++)
        CU_ASSERT_EQUAL(pl_ws_parse(&p, fbuf, k, &f, &used), PL_AGAIN);
    CU_ASSERT_EQUAL(pl_ws_parse(&p, fbuf, n, &f, &used), PL_OK);
    CU_ASSERT_EQUAL(p.utf8.need, 0);
}

static void test_limit_lowered_mid_message(void)
{
    /* If a caller shrinks max_message below what a message already holds,
     * the next fragment is refused rather than the check wrapping around. */
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_BINARY, 0, pbuf, 500, &f), PL_OK);
    p.max_message = 100;
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, "", 0, &f), PL_WS_CLOSE_TOO_BIG);
}

static void test_fragmented_message(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);

    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_TEXT, 0, "Hel", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(f.fin, 0);
    CU_ASSERT_EQUAL(p.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(p.msg_len, 3);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CONT, 0, "lo ", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_CONT);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(p.msg_len, 6);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CONT, 0, "", 0, &f), PL_OK); /* empty fragment */
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CONT, 1, "world", 5, &f), PL_OK);
    CU_ASSERT_EQUAL(f.fin, 1);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_TEXT);
    CU_ASSERT(memcmp(f.payload, "world", 5) == 0);
    CU_ASSERT_EQUAL(p.msg_opcode, 0);
    CU_ASSERT_EQUAL(p.msg_len, 0);

    /* Binary works the same way and is not UTF-8-checked. */
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_BINARY, 0, "\xff\xfe", 2, &f), PL_OK);
    CU_ASSERT_EQUAL(p.msg_opcode, PL_WS_BINARY);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CONT, 1, "\xc0", 1, &f), PL_OK);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_BINARY);
    CU_ASSERT_EQUAL(p.msg_opcode, 0);
}

static void test_continuation_without_message_is_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, "x", 1, &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, "x", 1, &f), PL_WS_CLOSE_PROTOCOL);
    /* Also right after a message ended. */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, "x", 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, "x", 1, &f), PL_WS_CLOSE_PROTOCOL);
}

static void test_new_message_while_open_is_1002(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_TEXT, 0, "x", 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, "y", 1, &f), PL_WS_CLOSE_PROTOCOL);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_BINARY, 1, "y", 1, &f), PL_WS_CLOSE_PROTOCOL);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_BINARY, 0, "x", 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "y", 1, &f), PL_WS_CLOSE_PROTOCOL);
}

static void test_control_inside_fragmented_message(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);
    /* The emoji is split around the control frames, too. */
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_TEXT, 0, "ab\xf0\x9f", 4, &f), PL_OK);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_PING, 1, "ping!", 5, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_PING);
    CU_ASSERT_EQUAL(f.fin, 1);
    CU_ASSERT(memcmp(f.payload, "ping!", 5) == 0);
    CU_ASSERT_EQUAL(p.msg_opcode, PL_WS_TEXT); /* message still open */
    CU_ASSERT_EQUAL(p.msg_len, 4);
    CU_ASSERT_EQUAL(p.utf8.need, 2);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_PONG, 1, "", 0, &f), PL_OK);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CLOSE, 1, "\x03\xe8", 2, &f), PL_OK);
    CU_ASSERT_EQUAL(f.close_code, 1000);
    CU_ASSERT_EQUAL(p.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CONT, 1, "\x98\x80!", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(f.msg_opcode, PL_WS_TEXT);
    CU_ASSERT_EQUAL(p.msg_opcode, 0);
}

static void test_close_payloads(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    pl_ws_parser_init(&p, 1000);

    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CLOSE, 1, "", 0, &f), PL_OK);
    CU_ASSERT_EQUAL(f.opcode, PL_WS_CLOSE);
    CU_ASSERT_EQUAL(f.close_code, 1005);
    CU_ASSERT_EQUAL(f.reason_len, 0);

    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, "\x03", 1, &f), PL_WS_CLOSE_PROTOCOL);

    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CLOSE, 1,
                                 "\x03\xe8"
                                 "bye",
                                 5, &f),
                          PL_OK);
    CU_ASSERT_EQUAL(f.close_code, 1000);
    CU_ASSERT_EQUAL(f.reason_len, 3);
    CU_ASSERT(memcmp(f.reason, "bye", 3) == 0);

    CU_ASSERT_EQUAL_FATAL(frame1(&p, PL_WS_CLOSE, 1, "\x0f\xa0\xc3\xa9t\xc3\xa9", 7, &f), PL_OK);
    CU_ASSERT_EQUAL(f.close_code, 4000);
    CU_ASSERT_EQUAL(f.reason_len, 5);

    /* Reason not UTF-8, or cut inside a code point. */
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, "\x03\xe8\xff", 3, &f), PL_WS_CLOSE_BAD_DATA);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, "\x03\xe8\xce", 3, &f), PL_WS_CLOSE_BAD_DATA);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, "\x03\xe8\xed\xa0\x80", 5, &f),
                    PL_WS_CLOSE_BAD_DATA);

    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        uint8_t b[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, b, 2, &f), PL_WS_CLOSE_PROTOCOL);
    }
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                    1010, 1011, 1012, 1013, 1014, 3000, 4999};
    for (size_t i = 0; i < PL_ARRAY_LEN(good); i++) {
        uint8_t b[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
        CU_ASSERT_EQUAL(frame1(&p, PL_WS_CLOSE, 1, b, 2, &f), PL_OK);
        CU_ASSERT_EQUAL(f.close_code, good[i]);
    }
}

static void test_close_code_valid_table(void)
{
    int n = 0;
    for (uint32_t c = 0; c <= 0xFFFF; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
        CU_ASSERT_EQUAL(pl_ws_close_code_valid((uint16_t)c) != 0, want);
        n += want;
    }
    CU_ASSERT_EQUAL(n, 4 + 8 + 2000);
}

static void test_text_utf8_across_fragments(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    static const uint8_t emoji[] = {0xf0, 0x9f, 0x98, 0x80}; /* U+1F600 */

    /* Every split of the 4-byte emoji between two fragments is valid. */
    for (size_t cut = 0; cut <= 4; cut++) {
        pl_ws_parser_init(&p, 1000);
        CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, emoji, cut, &f), PL_OK);
        CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, emoji + cut, 4 - cut, &f), PL_OK);
    }
    /* One byte per fragment. */
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, emoji, 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, emoji + 1, 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, emoji + 2, 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, emoji + 3, 1, &f), PL_OK);

    /* Invalid sequences split across fragments: 1007 on the frame where the
     * bad byte shows up, even before FIN. */
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "\xf0\x9f", 2, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, "A", 1, &f), PL_WS_CLOSE_BAD_DATA);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "ok\xed", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, "\xa0\x80", 2, &f), PL_WS_CLOSE_BAD_DATA);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "\xf4", 1, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 0, "\x90\x80\x80", 3, &f), PL_WS_CLOSE_BAD_DATA);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "\xff", 1, &f), PL_WS_CLOSE_BAD_DATA);

    /* A code point still open at FIN. */
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, "ab\xe2\x82", 4, &f), PL_WS_CLOSE_BAD_DATA);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "ab\xe2", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, "\x82", 1, &f), PL_WS_CLOSE_BAD_DATA);
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 0, "ab\xe2", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_CONT, 1, "", 0, &f), PL_WS_CLOSE_BAD_DATA);

    /* A new text message starts with a clean validator. */
    pl_ws_parser_init(&p, 1000);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, "\xe2\x82\xac", 3, &f), PL_OK);
    CU_ASSERT_EQUAL(frame1(&p, PL_WS_TEXT, 1, "plain", 5, &f), PL_OK);
}

static void test_many_frames_in_one_buffer(void)
{
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    static uint8_t buf[200000];
    size_t n = 0, off = 0, count = 0;
    char text[32];

    /* 300 frames: text, fragmented text, binary, ping, a 16-bit length. */
    for (int i = 0; i < 60; i++) {
        int tl = snprintf(text, sizeof(text), "msg %d \xc3\xa9", i);
        n += mkframe(buf + n, PL_WS_TEXT, 1, text, (size_t)tl);
        n += mkframe(buf + n, PL_WS_TEXT, 0, "fr", 2);
        n += mkframe(buf + n, PL_WS_PING, 1, text, 3);
        n += mkframe(buf + n, PL_WS_CONT, 1, "ag", 2);
        n += mkframe(buf + n, PL_WS_BINARY, 1, pbuf, 300);
    }
    n += mkframe(buf + n, PL_WS_CLOSE, 1, "\x03\xe8", 2);
    size_t full = n;
    n += mkframe(buf + n, PL_WS_TEXT, 1, "partial", 7) - 3; /* cut short */

    pl_ws_parser_init(&p, 1000);
    for (;;) {
        size_t used = 0;
        int rc = pl_ws_parse(&p, buf + off, n - off, &f, &used);
        if (rc != PL_OK) {
            CU_ASSERT_EQUAL(rc, PL_AGAIN);
            break;
        }
        CU_ASSERT_FATAL(used > 0 && used <= n - off);
        CU_ASSERT(f.payload >= buf + off && f.payload + f.len <= buf + off + used);
        static const uint8_t want[] = {PL_WS_TEXT, PL_WS_TEXT, PL_WS_PING, PL_WS_CONT,
                                       PL_WS_BINARY};
        if (count < 300) {
            CU_ASSERT_EQUAL(f.opcode, want[count % 5]);
        }
        if (count % 5 == 0 && count < 300) {
            snprintf(text, sizeof(text), "msg %d \xc3\xa9", (int)(count / 5));
            CU_ASSERT_EQUAL(f.len, strlen(text));
            CU_ASSERT(memcmp(f.payload, text, f.len) == 0);
        }
        off += used;
        count++;
    }
    CU_ASSERT_EQUAL(count, 301);
    CU_ASSERT_EQUAL(off, full);
    CU_ASSERT_EQUAL(f.close_code, 1000);
}

static void test_server_header_encoding(void)
{
    uint8_t h[PL_WS_MAX_HEADER];
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_TEXT, 0), 2);
    CU_ASSERT(memcmp(h, "\x81\x00", 2) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_BINARY, 125), 2);
    CU_ASSERT(memcmp(h, "\x82\x7d", 2) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_TEXT, 126), 4);
    CU_ASSERT(memcmp(h, "\x81\x7e\x00\x7e", 4) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_TEXT, 65535), 4);
    CU_ASSERT(memcmp(h, "\x81\x7e\xff\xff", 4) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_TEXT, 65536), 10);
    CU_ASSERT(memcmp(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_CLOSE, 0x0102030405ULL), 10);
    CU_ASSERT(memcmp(h, "\x88\x7f\x00\x00\x00\x01\x02\x03\x04\x05", 10) == 0);
    CU_ASSERT_EQUAL(pl_ws_header(h, PL_WS_PONG, 3), 2);
    CU_ASSERT(memcmp(h, "\x8a\x03", 2) == 0);
}

static void test_client_frame_masks(void)
{
    uint8_t out[64];
    size_t n =
        pl_ws_client_frame(out, PL_WS_BINARY, 0, (const uint8_t *)"\0\0\0\0\0", 5, 0x01020304);
    CU_ASSERT_EQUAL(n, 11);
    CU_ASSERT(memcmp(out, "\x02\x85\x01\x02\x03\x04\x01\x02\x03\x04\x01", 11) == 0);
    CU_ASSERT_EQUAL(pl_ws_client_frame(out, PL_WS_PING, 1, NULL, 0, 0), 6);
    CU_ASSERT(memcmp(out, "\x89\x80\0\0\0\0", 6) == 0);
}

PL_UNIT_SUITE(ws, PL_TEST(test_accept_key_rfc_example), PL_TEST(test_accept_key_rejects_bad_keys),
              PL_TEST(test_rfc_masked_hello), PL_TEST(test_unmasked_frame_is_1002),
              PL_TEST(test_reserved_bits_are_1002), PL_TEST(test_reserved_opcodes_are_1002),
              PL_TEST(test_control_frame_rules), PL_TEST(test_payload_lengths_16_and_64_bit),
              PL_TEST(test_non_minimal_length_is_1002), PL_TEST(test_size_limit_from_header),
              PL_TEST(test_incomplete_frames_are_again),
              PL_TEST(test_again_does_not_feed_utf8_twice), PL_TEST(test_limit_lowered_mid_message),
              PL_TEST(test_fragmented_message), PL_TEST(test_continuation_without_message_is_1002),
              PL_TEST(test_new_message_while_open_is_1002),
              PL_TEST(test_control_inside_fragmented_message), PL_TEST(test_close_payloads),
              PL_TEST(test_close_code_valid_table), PL_TEST(test_text_utf8_across_fragments),
              PL_TEST(test_many_frames_in_one_buffer), PL_TEST(test_server_header_encoding),
              PL_TEST(test_client_frame_masks))
