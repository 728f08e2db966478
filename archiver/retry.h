/*
 * How the archiver waits and retries: the stop flag the signal handler
 * raises, sleeps that end early when it is raised, exponential backoff,
 * and (re)connecting a Redis reader with that backoff. The batch loop and
 * the writer threads both retry through these, so a stop interrupts every
 * wait the same way.
 */
#ifndef PL_ARCH_RETRY_H
#define PL_ARCH_RETRY_H

#include "reader.h"

#include <signal.h>
#include <stdint.h>

#define PL_RETRY_MIN_MS 100  /* first backoff delay */
#define PL_RETRY_MAX_MS 3000 /* backoff never waits longer */

/* The number of the signal that asked the archiver to stop, 0 while it
 * runs. Written only by main's signal handler; read by every loop. */
extern volatile sig_atomic_t pl_arch_stopping;

/* Sleeps ms in short slices; returns 0, or -1 as soon as a stop was asked. */
int pl_retry_nap(uint64_t ms);
/* The delay after ms: doubled, at most PL_RETRY_MAX_MS. */
uint64_t pl_retry_next(uint64_t ms);

/* (Re)connects r with backoff, logging the first failure (and each one at
 * debug level) and counting each in the metrics. Makes one attempt even
 * when stopping (a committed batch still wants its ack). Returns 0, or -1
 * once stopped. */
int pl_retry_connect(pl_reader_t *r);
/* Counts and logs a Redis failure (`when`: what was being done) and drops
 * r's connections; the next use reconnects. */
void pl_retry_failed(pl_reader_t *r, const char *when);

#endif
