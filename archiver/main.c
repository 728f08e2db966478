/*
 * parley-archiver: moves acknowledged chat messages from the Redis stream
 * parley:archive into MySQL/MariaDB.
 *
 *   parley-archiver [-c FILE] run      until SIGTERM/SIGINT
 *   parley-archiver [-c FILE] drain    until the stream is caught up
 *   parley-archiver [-c FILE] migrate  apply missing deploy/sql migrations
 *
 * This file is the command line: it reads the configuration (options.c),
 * checks both URLs, installs the signal handlers, starts the metrics
 * server (for `run` only) and hands over to the batch loop (loop.c) or the migrations
 * (migrate.c). The rest of the archiver, by concern:
 *   loop.c     the batch loop: reads, prefetches, claims, trims, ends a drain
 *   pool.c     writer threads: commit a batch, raise markers, then ack
 *   reader.c   the Redis connections of the consumer group
 *   writer.c   stream entry -> row, the batched INSERT, the MySQL connection
 *   marks.c    archived-marker runs and the script that raises them
 *   streamid.c stream entry IDs
 *   retry.c    stop flag, backoff, Redis reconnects
 *   metrics.c  counters and the /metrics HTTP thread
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage.
 */
#include "config.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "migrate.h"
#include "mysql_url.h"
#include "options.h"
#include "redis_url.h"
#include "retry.h"
#include "util.h"

#include <mysql.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_signal(int sig)
{
    pl_arch_stopping = sig;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: parley-archiver [-c FILE] COMMAND [--key value ...]\n"
                 "\n"
                 "commands:\n"
                 "  run      archive until SIGTERM/SIGINT (finishes the batch in flight)\n"
                 "  drain    archive until the stream is caught up, then exit 0\n"
                 "           (1 if stopped by a signal first); serves no /metrics, so it\n"
                 "           runs beside `run` with the same configuration\n"
                 "  migrate  apply the missing SQL migrations, then exit 0\n"
                 "\n"
                 "options (also `key = value` in FILE and PARLEY_<KEY> in the environment):\n");
    pl_config_usage(pl_arch_options, out);
    fprintf(out, "\nexit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage\n");
}

int main(int argc, char **argv)
{
    pl_log_init("parley-archiver", -1);
    const char *file = NULL, *command = NULL;
    char **opts = pl_xcalloc((size_t)argc + 1, sizeof(char *));
    int nopts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(opts);
            return 0;
        } else if (strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "parley-archiver: -c needs a file\n");
                free(opts);
                return 2;
            }
            file = argv[++i];
        } else if (strncmp(a, "--", 2) == 0) {
            opts[nopts++] = argv[i];
            if (strchr(a, '=') == NULL && i + 1 < argc)
                opts[nopts++] = argv[++i];
        } else if (command == NULL) {
            command = a;
        } else {
            fprintf(stderr, "parley-archiver: unexpected argument '%s'\n", a);
            free(opts);
            return 2;
        }
    }
    if (command == NULL || (strcmp(command, "run") != 0 && strcmp(command, "drain") != 0 &&
                            strcmp(command, "migrate") != 0)) {
        if (command)
            fprintf(stderr, "parley-archiver: unknown command '%s'\n", command);
        usage(stderr);
        free(opts);
        return 2;
    }

    pl_arch_config_t cfg = {0};
    char err[512];
    if (pl_config_load(pl_arch_options, &cfg, file, nopts, opts, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-archiver: %s\n", err);
        pl_config_free(pl_arch_options, &cfg);
        free(opts);
        return 2;
    }
    free(opts);
    pl_log_level = pl_log_level_parse(cfg.log_level);

    pl_mysql_url_t murl;
    if (pl_mysql_url_parse(cfg.mysql_url, &murl, err, sizeof(err)) < 0 || murl.database == NULL) {
        if (murl.host || murl.socket)
            snprintf(err, sizeof(err), "'%s' names no database", cfg.mysql_url);
        fprintf(stderr, "parley-archiver: mysql_url: %s\n", err);
        pl_mysql_url_free(&murl);
        pl_config_free(pl_arch_options, &cfg);
        return 2;
    }
    pl_redis_url_t rurl;
    if (pl_redis_url_parse(cfg.redis_url, &rurl, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-archiver: redis_url: %s\n", err);
        pl_mysql_url_free(&murl);
        pl_config_free(pl_arch_options, &cfg);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: let sleeps return early */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    mysql_library_init(0, NULL, NULL);

    char desc[512];
    int code;
    if (strcmp(command, "migrate") == 0) {
        const char *dir = pl_migrate_default_dir(cfg.migrations_dir);
        pl_log_info("migrating\tmysql=\"%s\" dir=\"%s\"",
                    pl_mysql_url_describe(&murl, desc, sizeof(desc)), dir);
        int transient;
        code = pl_migrate_run(&murl, dir, &transient) == 0 ? 0 : 1;
        goto done;
    }

    char consumer[300];
    if (cfg.consumer[0]) {
        snprintf(consumer, sizeof(consumer), "%s", cfg.consumer);
    } else {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(consumer, sizeof(consumer), "%s-%d", host, (int)getpid());
    }

    /* Only `run` serves /metrics: a drain is a one-shot job, often started
     * beside a running `run` on the same host with the same config, and
     * must not fail on (or take) its port. It logs its totals instead. */
    int serve_metrics = cfg.metrics_listen[0] && strcmp(command, "run") == 0;
    if (serve_metrics) {
        /* The server thread must not take SIGTERM/SIGINT from main. */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = pl_arch_metrics_start(cfg.metrics_listen, err, sizeof(err));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc < 0) {
            pl_log_error("cannot start metrics server\terror=\"%s\"", err);
            code = 1;
            goto done;
        }
    }

    pl_log_info("starting\tcommand=%s stream=%s group=%s consumer=%s batch_size=%lld "
                "writers=%lld mysql=\"%s\"",
                command, cfg.stream, cfg.group, consumer, (long long)cfg.batch_size,
                (long long)cfg.writers, pl_mysql_url_describe(&murl, desc, sizeof(desc)));
    code = pl_loop_run(&cfg, &rurl, &murl, consumer, strcmp(command, "drain") == 0);

done:
    pl_redis_url_free(&rurl);
    pl_mysql_url_free(&murl);
    pl_config_free(pl_arch_options, &cfg);
    mysql_library_end();
    return code;
}
