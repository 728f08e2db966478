/*
 * The batch loop behind `parley-archiver run` and `drain`: reads batches
 * from the consumer group on the main thread and hands them to the writer
 * threads (pool.h) until a stop signal, the end of a drain, or a fatal
 * writer error.
 */
#ifndef PL_ARCH_LOOP_H
#define PL_ARCH_LOOP_H

#include "mysql_url.h"
#include "options.h"
#include "redis_url.h"

/* Runs until pl_arch_stopping is raised (run), or until nothing is left
 * pending in the group (drain != 0). Keeps pointers to its arguments for
 * its duration. Returns the exit code: 0; 1 after a fatal writer error or,
 * for a drain, when stopped before it was done. */
int pl_loop_run(const pl_arch_config_t *cfg, const pl_redis_url_t *rurl, const pl_mysql_url_t *murl,
                const char *consumer, int drain);

#endif
