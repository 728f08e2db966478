/*
 * ratelimit.c: burst, refill, rejection and the abuse threshold.
 */
#include "ratelimit.h"
#include "unit.h"

static void test_burst_and_refill(void)
{
    pl_ratelimit_t rl;
    pl_ratelimit_init(&rl, 10, 5, 1000);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 1000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 1000), PL_RATE_REJECT);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 1050), PL_RATE_REJECT); /* half a token */
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 1100), PL_RATE_ALLOW);  /* 1 token after 100 ms */
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 1100), PL_RATE_REJECT);
    /* a long pause refills to burst, not beyond */
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 100000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 100000), PL_RATE_REJECT);
}

static void test_abuse(void)
{
    pl_ratelimit_t rl;
    pl_ratelimit_init(&rl, 1, 1, 0);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 0), PL_RATE_ALLOW);
    for (int i = 1; i < PL_RATE_ABUSE; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 0), PL_RATE_REJECT);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 0), PL_RATE_ABUSIVE);
    /* an allowed command resets the count */
    pl_ratelimit_init(&rl, 1, 1, 0);
    (void)pl_ratelimit_take(&rl, 0);
    for (int i = 0; i < PL_RATE_ABUSE - 2; i++)
        (void)pl_ratelimit_take(&rl, 0);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 5000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, 5000), PL_RATE_REJECT);
}

PL_UNIT_SUITE(ratelimit, PL_TEST(test_burst_and_refill), PL_TEST(test_abuse))
