/*
 * common/siphash.c: SipHash-2-4 against the test vector printed in the
 * paper (Appendix A: key 00..0f, message 00..0e) and the reference
 * implementation's vectors for the empty message and a few lengths
 * around the 8-byte word boundary; SipHash-1-3 (what map.c uses) against
 * values computed by a separate implementation written from the paper's
 * description (a Python transcription), for the same lengths.
 */
#include "siphash.h"
#include "unit.h"

#include <stdint.h>

static uint8_t key[16];
static uint8_t msg[64];

static void setup(void)
{
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
}

static void test_paper_vector(void)
{
    setup();
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
}

static void test_siphash24_lengths(void)
{
    setup();
    CU_ASSERT_EQUAL(pl_siphash24(key, NULL, 0), 0x726fdb47dd0e0e31ULL);
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 1), 0x74f839c593dc67fdULL);
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 7), 0xab0200f58b01d137ULL);
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 8), 0x93f5f5799a932462ULL);
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 16), 0x3f2acc7f57c29bdbULL);
    CU_ASSERT_EQUAL(pl_siphash24(key, msg, 63), 0x958a324ceb064572ULL);
}

static void test_siphash13_lengths(void)
{
    setup();
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 0), 0xabac0158050fc4dcULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 1), 0xc9f49bf37d57ca93ULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 7), 0xd3927d989bb11140ULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 8), 0x369095118d299a8eULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 15), 0xd320d86d2a519956ULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 16), 0xcc4fdd1a7d908b66ULL);
    CU_ASSERT_EQUAL(pl_siphash13(key, msg, 63), 0x9d199062b7bbb3a8ULL);
}

static void test_key_matters(void)
{
    setup();
    uint8_t other[16];
    for (int i = 0; i < 16; i++)
        other[i] = key[i];
    other[15] ^= 1;
    CU_ASSERT_NOT_EQUAL(pl_siphash13(key, "room", 4), pl_siphash13(other, "room", 4));
    /* the length is part of the input: a trailing NUL changes the hash */
    CU_ASSERT_NOT_EQUAL(pl_siphash13(key, "room", 4), pl_siphash13(key, "room", 5));
}

PL_UNIT_SUITE(siphash, PL_TEST(test_paper_vector), PL_TEST(test_siphash24_lengths),
              PL_TEST(test_siphash13_lengths), PL_TEST(test_key_matters))
