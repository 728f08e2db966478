/*
 * The archiver's configuration: every key, its default and its bounds live
 * in one table in options.c (same loader and precedence as the gateway:
 * defaults -> -c FILE -> PARLEY_<KEY> -> --key value).
 */
#ifndef PL_ARCH_OPTIONS_H
#define PL_ARCH_OPTIONS_H

#include "config.h"

#include <stdint.h>

typedef struct pl_arch_config {
    char *redis_url;       /* see common/redis_url.h */
    char *mysql_url;       /* see common/mysql_url.h; must name a database */
    char *stream;          /* stream the gateway XADDs to */
    char *group;           /* consumer group shared by all archivers */
    char *consumer;        /* this archiver's name in the group; "" = host-pid */
    int64_t batch_size;    /* entries per XREADGROUP and per INSERT transaction */
    int64_t writers;       /* threads writing batches in parallel, one MySQL connection each */
    int64_t block_ms;      /* ms one XREADGROUP blocks waiting for entries */
    int64_t claim_idle;    /* ms before another consumer's pending entry is claimed */
    int64_t trim_interval; /* ms between XTRIMs of acknowledged entries */
    char *metrics_listen;  /* host:port for /metrics and /healthz; "" = off */
    char *migrations_dir;  /* directory of NNN_name.sql files; "" = built-in default */
    char *log_level;       /* error|warn|info|debug */
} pl_arch_config_t;

extern const pl_opt_t pl_arch_options[];

#endif
