/*
 * The writer threads. Each has its own MySQL connection (a pl_writer) and
 * its own Redis connection for acknowledging (a pl_reader whose control
 * link alone is used), so batches commit in parallel: MariaDB runs one
 * thread per connection. The batch loop hands batches over through a
 * one-slot queue; a thread writes its batch in one transaction, then, and
 * only after COMMIT, raises the rooms' archived markers and acknowledges
 * the entries (dead-lettering the ones that cannot be stored). Every step
 * is retried with backoff until it succeeds or the archiver stops; a stop
 * leaves the batch pending in the group, to be re-delivered.
 */
#ifndef PL_ARCH_POOL_H
#define PL_ARCH_POOL_H

#include "mysql_url.h"
#include "options.h"
#include "reader.h"
#include "redis_url.h"

typedef struct pl_pool pl_pool_t;

/* Starts cfg->writers threads (SIGTERM and SIGINT stay with the calling
 * thread). Keeps pointers to every argument: they must outlive the pool. */
pl_pool_t *pl_pool_start(const pl_arch_config_t *cfg, const pl_redis_url_t *rurl,
                         const pl_mysql_url_t *murl, const char *consumer);

/* Hands *b to a writer thread, waiting while the slot is full, and leaves
 * an empty batch in *b (its arrays are reused). Returns 0, or -1 once a
 * writer failed fatally (*b is then cleared). */
int pl_pool_dispatch(pl_pool_t *p, pl_arch_batch_t *b);

/* True once a writer met an error that retrying cannot fix (schema,
 * permissions): the archiver must stop and exit 1. */
int pl_pool_failed(const pl_pool_t *p);

/* Lets the threads finish (commit and ack) the batches they hold and the
 * one in the slot, joins them and frees the pool. Returns 1 if a writer
 * failed fatally at any time (also while finishing), else 0. */
int pl_pool_stop(pl_pool_t *p);

#endif
