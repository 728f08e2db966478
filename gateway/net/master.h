/*
 * The master process: owns the listening sockets (one per worker slot,
 * SO_REUSEPORT on one address) and the shared metrics, forks the workers,
 * replaces dead ones with backoff, reloads on SIGHUP by rolling the
 * workers, and shuts down on SIGTERM/SIGINT. No event loop: signals are
 * blocked and taken in sigsuspend.
 */
#ifndef PL_MASTER_H
#define PL_MASTER_H

#include "options.h"

/* Fills the path -> module table (ops.h) for cfg: pl_ops_clear, then one
 * pl_*_register per module. The master calls it before forking the first
 * workers and after each successful reload, before forking their
 * replacements; cfg stays valid until the next call. */
typedef void pl_master_setup_fn(const pl_gw_config_t *cfg);

/* Runs until shutdown; returns the process exit status. cfg has been
 * loaded from file and the argc/argv flags; both are re-read on SIGHUP.
 * Takes ownership of cfg's strings. */
int pl_master_run(pl_gw_config_t *cfg, const char *file, int argc, char **argv,
                  pl_master_setup_fn *setup);

#endif
