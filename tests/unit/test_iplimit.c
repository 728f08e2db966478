/*
 * iplimit.c: the node-wide per-address table in one process (blocks stand
 * in for workers): limits, release, deletion inside probe runs, a dead
 * block's counts dropped, the table full, and the seeded hash.
 */
#include "iplimit.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static pl_addr_t ip(unsigned n)
{
    pl_addr_t a = {{0}};
    a.b[10] = a.b[11] = 0xff;
    a.b[12] = 10;
    a.b[13] = (uint8_t)(n >> 16);
    a.b[14] = (uint8_t)(n >> 8);
    a.b[15] = (uint8_t)n;
    return a;
}

/* One table for the whole suite (it is created once per process). */
static void setup(void)
{
    CU_ASSERT_FATAL(pl_iplimit_create(1000, 4) == 0);
    CU_ASSERT(pl_iplimit_enabled());
}

static void test_limit_and_release(void)
{
    setup();
    pl_iplimit_attach(0);
    pl_addr_t a = ip(1), b = ip(2);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(pl_iplimit_acquire(&a, 3), PL_IPLIMIT_OK);
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&a, 3), PL_IPLIMIT_OVER);
    pl_iplimit_attach(1); /* another worker: the limit is per node */
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&a, 3), PL_IPLIMIT_OVER);
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&b, 3), PL_IPLIMIT_OK);
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 3);
    pl_iplimit_attach(0);
    pl_iplimit_release(&a);
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 2);
    pl_iplimit_attach(1);
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&a, 3), PL_IPLIMIT_OK);
    /* a release by a block that holds none of a's counts changes nothing */
    pl_iplimit_attach(2);
    pl_iplimit_release(&a);
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 3);
    /* block 1 dies: its counts go, block 0's stay */
    pl_iplimit_reset_block(1);
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 2);
    CU_ASSERT_EQUAL(pl_iplimit_count(&b), 0);
    pl_iplimit_attach(0);
    pl_iplimit_release(&a);
    pl_iplimit_release(&a);
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 0);
    pl_iplimit_release(&a); /* not held: ignored */
    CU_ASSERT_EQUAL(pl_iplimit_count(&a), 0);
}

/* Many addresses in and out in a scrambled order: every count stays
 * right, so backward-shift deletion never loses an entry in a run. */
static void test_churn_keeps_counts(void)
{
    setup();
    pl_iplimit_attach(3);
    enum { N = 700 };
    static unsigned held[N];
    memset(held, 0, sizeof(held));
    unsigned x = 12345;
    for (int step = 0; step < 20000; step++) {
        x = x * 1103515245u + 12345u;
        unsigned k = (x >> 8) % N;
        pl_addr_t a = ip(1000 + k);
        if ((x >> 20) & 1) {
            enum pl_iplimit_result r = pl_iplimit_acquire(&a, 5);
            CU_ASSERT(r == (held[k] < 5 ? PL_IPLIMIT_OK : PL_IPLIMIT_OVER));
            if (r == PL_IPLIMIT_OK)
                held[k]++;
        } else if (held[k] > 0) {
            pl_iplimit_release(&a);
            held[k]--;
        }
    }
    int wrong = 0;
    for (unsigned k = 0; k < N; k++) {
        pl_addr_t a = ip(1000 + k);
        wrong += pl_iplimit_count(&a) != held[k];
    }
    CU_ASSERT_EQUAL(wrong, 0);
    pl_iplimit_reset_block(3);
    for (unsigned k = 0; k < N; k++) {
        pl_addr_t a = ip(1000 + k);
        wrong += pl_iplimit_count(&a) != 0;
    }
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_full_table_lets_in(void)
{
    setup(); /* 1024 entries: new addresses stop at 3/4 */
    pl_iplimit_attach(2);
    unsigned ok = 0, full = 0;
    for (unsigned k = 0; k < 1024; k++) {
        pl_addr_t a = ip(50000 + k);
        enum pl_iplimit_result r = pl_iplimit_acquire(&a, 1);
        ok += r == PL_IPLIMIT_OK;
        full += r == PL_IPLIMIT_FULL;
    }
    CU_ASSERT_EQUAL(ok, 768);
    CU_ASSERT_EQUAL(full, 1024 - 768);
    pl_addr_t first = ip(50000);
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&first, 1), PL_IPLIMIT_OVER); /* known ones still count */
    pl_iplimit_reset_block(2);
    CU_ASSERT_EQUAL(pl_iplimit_acquire(&first, 1), PL_IPLIMIT_OK);
    pl_iplimit_reset_block(2);
}

static void test_hash_is_keyed(void)
{
    uint64_t k1[2] = {1, 2}, k2[2] = {1, 3};
    pl_addr_t a = ip(7), b = ip(8);
    CU_ASSERT_EQUAL(pl_iplimit_hash(k1, &a), pl_iplimit_hash(k1, &a));
    CU_ASSERT_NOT_EQUAL(pl_iplimit_hash(k1, &a), pl_iplimit_hash(k2, &a));
    CU_ASSERT_NOT_EQUAL(pl_iplimit_hash(k1, &a), pl_iplimit_hash(k1, &b));
    /* SipHash-2-4 reference: key 00..0f, message 00..0f -> 0x3f2acc7f57c29bdb */
    uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    pl_addr_t m;
    for (int i = 0; i < 16; i++)
        m.b[i] = (uint8_t)i;
    CU_ASSERT_EQUAL(pl_iplimit_hash(key, &m), 0x3f2acc7f57c29bdbULL);
}

PL_UNIT_SUITE(iplimit, PL_TEST(test_limit_and_release), PL_TEST(test_churn_keeps_counts),
              PL_TEST(test_full_table_lets_in), PL_TEST(test_hash_is_keyed))
