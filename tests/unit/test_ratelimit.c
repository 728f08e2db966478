/*
 * ratelimit.c: burst, refill, rejection, the abuse threshold per
 * connection, and one bucket shared by a user's connections.
 */
#include "ratelimit.h"
#include "unit.h"

static void test_burst_and_refill(void)
{
    pl_ratelimit_t rl;
    uint32_t rej = 0;
    pl_ratelimit_init(&rl, 10, 5, 1000);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 1000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 1000), PL_RATE_REJECT);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 1050), PL_RATE_REJECT); /* half a token */
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 1100), PL_RATE_ALLOW);  /* 1 token after 100 ms */
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 1100), PL_RATE_REJECT);
    /* a long pause refills to burst, not beyond */
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 100000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 100000), PL_RATE_REJECT);
}

static void test_abuse(void)
{
    pl_ratelimit_t rl;
    uint32_t rej = 0;
    pl_ratelimit_init(&rl, 1, 1, 0);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 0), PL_RATE_ALLOW);
    for (int i = 1; i < PL_RATE_ABUSE; i++)
        CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 0), PL_RATE_REJECT);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 0), PL_RATE_ABUSIVE);
    /* an allowed command resets the count */
    pl_ratelimit_init(&rl, 1, 1, 0);
    rej = 0;
    (void)pl_ratelimit_take(&rl, &rej, 0);
    for (int i = 0; i < PL_RATE_ABUSE - 2; i++)
        (void)pl_ratelimit_take(&rl, &rej, 0);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 5000), PL_RATE_ALLOW);
    CU_ASSERT_EQUAL(rej, 0);
    CU_ASSERT_EQUAL(pl_ratelimit_take(&rl, &rej, 5000), PL_RATE_REJECT);
}

/* Twenty connections of one user share its bucket: together they get the
 * burst, not twenty bursts; each keeps its own abuse count. */
static void test_shared_by_user(void)
{
    pl_ratelimit_t rl;
    uint32_t rej[20] = {0};
    pl_ratelimit_init(&rl, 10, 40, 0);
    int allowed = 0;
    for (int round = 0; round < 10; round++)
        for (int c = 0; c < 20; c++)
            allowed += pl_ratelimit_take(&rl, &rej[c], 0) == PL_RATE_ALLOW;
    CU_ASSERT_EQUAL(allowed, 40);
    for (int c = 0; c < 20; c++)
        CU_ASSERT_TRUE(rej[c] > 0 && rej[c] < PL_RATE_ABUSE);
    /* one connection that keeps going is the one that is closed */
    pl_rate_verdict_t v = PL_RATE_REJECT;
    for (int i = 0; i < PL_RATE_ABUSE && v != PL_RATE_ABUSIVE; i++)
        v = pl_ratelimit_take(&rl, &rej[0], 0);
    CU_ASSERT_EQUAL(v, PL_RATE_ABUSIVE);
    CU_ASSERT_TRUE(rej[1] < PL_RATE_ABUSE);
    /* one second later: rate more, for whichever connection asks */
    allowed = 0;
    for (int c = 0; c < 20; c++)
        allowed += pl_ratelimit_take(&rl, &rej[c], 1000) == PL_RATE_ALLOW;
    CU_ASSERT_EQUAL(allowed, 10);
}

PL_UNIT_SUITE(ratelimit, PL_TEST(test_burst_and_refill), PL_TEST(test_abuse),
              PL_TEST(test_shared_by_user))
