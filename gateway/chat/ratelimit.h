/*
 * The command rate limit: a token bucket per user on a worker, shared by
 * all of that user's connections there (so opening more sockets with one
 * token buys no more commands), and the abuse rule per connection on top
 * of it. Pure: the caller passes the clock, so tests need no sleeping.
 *
 * rate tokens per second refill a bucket of burst tokens; each command
 * takes one. A command that finds the bucket empty is rejected
 * (rate_limited). PL_RATE_ABUSE consecutive rejections of one connection
 * mean that client ignores the errors: that connection is closed 1008.
 */
#ifndef PL_RATELIMIT_H
#define PL_RATELIMIT_H

#include <stdint.h>

#define PL_RATE_ABUSE 100 /* consecutive rejections of a connection before closing it */

typedef enum {
    PL_RATE_ALLOW,  /* go ahead */
    PL_RATE_REJECT, /* reply rate_limited */
    PL_RATE_ABUSIVE /* close the connection with 1008 */
} pl_rate_verdict_t;

typedef struct pl_ratelimit {
    double tokens;    /* available now, 0..burst */
    double rate;      /* tokens per second */
    double burst;     /* bucket size */
    uint64_t last_ms; /* monotonic time of the last refill */
} pl_ratelimit_t;

/* Starts with a full bucket at now_ms. */
void pl_ratelimit_init(pl_ratelimit_t *rl, int64_t rate, int64_t burst, uint64_t now_ms);
/* Takes one token at now_ms (monotonic milliseconds) for a connection
 * whose consecutive rejections are *rejected (its own counter, updated:
 * reset by an allowed command). */
pl_rate_verdict_t pl_ratelimit_take(pl_ratelimit_t *rl, uint32_t *rejected, uint64_t now_ms);

#endif
