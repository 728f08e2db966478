/*
 * Token bucket (see ratelimit.h). Doubles keep fractional refills exact
 * enough for rates between 1 and a million per second.
 */
#include "ratelimit.h"

void pl_ratelimit_init(pl_ratelimit_t *rl, int64_t rate, int64_t burst, uint64_t now_ms)
{
    rl->rate = rate > 0 ? (double)rate : 1.0;
    rl->burst = burst > 0 ? (double)burst : 1.0;
    rl->tokens = rl->burst;
    rl->last_ms = now_ms;
}

pl_rate_verdict_t pl_ratelimit_take(pl_ratelimit_t *rl, uint32_t *rejected, uint64_t now_ms)
{
    if (now_ms > rl->last_ms) {
        rl->tokens += (double)(now_ms - rl->last_ms) * rl->rate / 1000.0;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
        rl->last_ms = now_ms;
    }
    if (rl->tokens >= 1.0) {
        rl->tokens -= 1.0;
        *rejected = 0;
        return PL_RATE_ALLOW;
    }
    if (++*rejected >= PL_RATE_ABUSE)
        return PL_RATE_ABUSIVE;
    return PL_RATE_REJECT;
}
