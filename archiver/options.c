/*
 * The archiver's option table (see options.h): names, defaults, bounds and
 * checks for every key, in one place.
 */
#include "options.h"
#include "log.h"
#include "checks.h"
#include "keys.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_name(const char *v, char *err, size_t errlen)
{
    if (*v == '\0') {
        snprintf(err, errlen, "must not be empty");
        return -1;
    }
    return 0;
}

#define OFF(f) offsetof(pl_arch_config_t, f)
#define DAY_MS 86400000LL

const pl_opt_t pl_arch_options[] = {
    {"redis_url", PL_OPT_STR, OFF(redis_url), "redis://127.0.0.1:6379/0", 0, 0, pl_check_redis_url,
     "Redis server holding the stream"},
    {"mysql_url", PL_OPT_STR, OFF(mysql_url), "mysql://parley@127.0.0.1:3306/parley", 0, 0,
     pl_check_mysql_url,
     "MariaDB/MySQL database (mysql://user:pw@host:port/db, or /socket?user=..&database=..)"},
    {"stream", PL_OPT_STR, OFF(stream), PL_KEY_ARCHIVE, 0, 0, check_name,
     "stream to archive (dead letters go to STREAM:dead)"},
    {"group", PL_OPT_STR, OFF(group), "archiver", 0, 0, check_name,
     "consumer group shared by all archivers"},
    {"consumer", PL_OPT_STR, OFF(consumer), "", 0, 0, NULL,
     "consumer name in the group (default: host-pid)"},
    {"batch_size", PL_OPT_INT, OFF(batch_size), "1000", 1, 10000, NULL,
     "entries per read and per INSERT transaction"},
    {"writers", PL_OPT_INT, OFF(writers), "2", 1, 16, NULL,
     "batches written in parallel (one MySQL connection each)"},
    {"block_ms", PL_OPT_DURATION, OFF(block_ms), "500ms", 1, 60000, NULL,
     "how long one read waits for new entries"},
    {"claim_idle", PL_OPT_DURATION, OFF(claim_idle), "30s", 100, DAY_MS, NULL,
     "idle time before another consumer's pending entries are claimed"},
    {"trim_interval", PL_OPT_DURATION, OFF(trim_interval), "1s", 1, DAY_MS, NULL,
     "time between trims of acknowledged entries"},
    {"metrics_listen", PL_OPT_STR, OFF(metrics_listen), "127.0.0.1:9108", 0, 0,
     pl_check_listen_or_off, "address for /metrics and /healthz of `run` (empty = off)"},
    {"migrations_dir", PL_OPT_STR, OFF(migrations_dir), "", 0, 0, NULL,
     "directory of NNN_name.sql migrations (default: installed data dir)"},
    {"log_level", PL_OPT_STR, OFF(log_level), "info", 0, 0, pl_check_log_level,
     "error, warn, info or debug"},
    PL_OPT_END,
};
