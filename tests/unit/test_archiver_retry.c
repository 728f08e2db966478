/*
 * archiver/retry.c: the backoff sequence, and that a raised stop flag
 * ends a sleep at once (a SIGTERM must not wait out a backoff).
 */
#include "../../archiver/retry.h"
#include "unit.h"
#include "util.h"

static void test_backoff_doubles_up_to_the_cap(void)
{
    uint64_t d = PL_RETRY_MIN_MS;
    CU_ASSERT_EQUAL(d, 100);
    d = pl_retry_next(d);
    CU_ASSERT_EQUAL(d, 200);
    for (int i = 0; i < 10; i++)
        d = pl_retry_next(d);
    CU_ASSERT_EQUAL(d, PL_RETRY_MAX_MS);
    CU_ASSERT_EQUAL(pl_retry_next(PL_RETRY_MAX_MS), PL_RETRY_MAX_MS);
}

static void test_nap_sleeps_unless_stopping(void)
{
    pl_arch_stopping = 0;
    uint64_t t0 = pl_mono_ms();
    CU_ASSERT_EQUAL(pl_retry_nap(60), 0);
    CU_ASSERT(pl_mono_ms() - t0 >= 60);
    pl_arch_stopping = 15;
    t0 = pl_mono_ms();
    CU_ASSERT_EQUAL(pl_retry_nap(10000), -1);
    CU_ASSERT(pl_mono_ms() - t0 < 1000);
    pl_arch_stopping = 0;
}

PL_UNIT_SUITE(archiver_retry, PL_TEST(test_backoff_doubles_up_to_the_cap),
              PL_TEST(test_nap_sleeps_unless_stopping))
