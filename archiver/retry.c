/*
 * Stop flag, interruptible sleeps, backoff and Redis reconnects (see
 * retry.h).
 */
#include "retry.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <time.h>

volatile sig_atomic_t pl_arch_stopping;

int pl_retry_nap(uint64_t ms)
{
    uint64_t end = pl_mono_ms() + ms;
    while (!pl_arch_stopping) {
        uint64_t now = pl_mono_ms();
        if (now >= end)
            return 0;
        uint64_t left = end - now;
        struct timespec ts = {0, (long)((left < 50 ? left : 50) * 1000000)};
        nanosleep(&ts, NULL);
    }
    return -1;
}

uint64_t pl_retry_next(uint64_t ms)
{
    ms *= 2;
    return ms > PL_RETRY_MAX_MS ? PL_RETRY_MAX_MS : ms;
}

int pl_retry_connect(pl_reader_t *r)
{
    uint64_t delay = PL_RETRY_MIN_MS;
    int logged = 0;
    /* One attempt even when stopping: a committed batch still wants its ack. */
    do {
        if (pl_reader_connect(r) == 0) {
            if (logged)
                pl_log_info("redis connection restored");
            return 0;
        }
        pl_arch_metrics_error(ERRK_REDIS);
        if (!logged || pl_log_level >= PL_LOG_DEBUG)
            pl_log_warn("cannot connect to redis, retrying\terror=\"%s\" retry_ms=%llu",
                        pl_reader_error(r), (unsigned long long)delay);
        logged = 1;
        if (pl_retry_nap(delay) < 0)
            break;
        delay = pl_retry_next(delay);
    } while (!pl_arch_stopping);
    return -1;
}

void pl_retry_failed(pl_reader_t *r, const char *when)
{
    pl_arch_metrics_error(ERRK_REDIS);
    pl_log_warn("redis failed, reconnecting\twhen=%s error=\"%s\"", when, pl_reader_error(r));
    pl_reader_disconnect(r);
}
