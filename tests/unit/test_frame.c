/*
 * net/frame.c: shared fanout frames are complete server frames (FIN, the
 * opcode, the shortest length encoding, no mask) and live until their last
 * reference goes.
 */
#include "frame.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void check_frame(size_t len, size_t hlen)
{
    char *payload = malloc(len + 1);
    memset(payload, 'x', len);
    pl_frame_t *f = pl_frame_new(0x1, payload, len);
    CU_ASSERT_EQUAL(f->refs, 1);
    CU_ASSERT_EQUAL(f->len, hlen + len);
    CU_ASSERT_EQUAL(f->data[0], 0x81); /* FIN + text */
    if (hlen == 2) {
        CU_ASSERT_EQUAL(f->data[1], len); /* no mask bit from a server */
    } else if (hlen == 4) {
        CU_ASSERT_EQUAL(f->data[1], 126);
        CU_ASSERT_EQUAL((size_t)f->data[2] << 8 | f->data[3], len);
    } else {
        CU_ASSERT_EQUAL(f->data[1], 127);
        size_t n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | f->data[2 + i];
        CU_ASSERT_EQUAL(n, len);
    }
    CU_ASSERT(memcmp(f->data + hlen, payload, len) == 0);
    pl_frame_unref(f);
    free(payload);
}

static void test_lengths(void)
{
    check_frame(0, 2);
    check_frame(125, 2);
    check_frame(126, 4);
    check_frame(65535, 4);
    check_frame(65536, 10);
}

static void test_opcode(void)
{
    pl_frame_t *f = pl_frame_new(0x2, "\x00\x01", 2);
    CU_ASSERT_EQUAL(f->data[0], 0x82);
    CU_ASSERT_EQUAL(f->len, 4);
    pl_frame_unref(f);
}

/* Each queue holding the frame takes a reference; the bytes stay valid
 * until the last one is dropped (ASan would catch a use after free). */
static void test_refs(void)
{
    pl_frame_t *f = pl_frame_new(0x1, "hello", 5);
    CU_ASSERT_PTR_EQUAL(pl_frame_ref(f), f);
    pl_frame_ref(f);
    CU_ASSERT_EQUAL(f->refs, 3);
    pl_frame_unref(f); /* the creator's */
    pl_frame_unref(f);
    CU_ASSERT_EQUAL(f->refs, 1);
    CU_ASSERT(memcmp(f->data + 2, "hello", 5) == 0);
    pl_frame_unref(f);
}

PL_UNIT_SUITE(frame, PL_TEST(test_lengths), PL_TEST(test_opcode), PL_TEST(test_refs))
