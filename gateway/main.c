/*
 * parley-gateway entry point: the command line and the config, validated
 * before anything forks, then the master (master.c). The one place that
 * knows every layer: it tells the transport which module serves which
 * WebSocket path (setup).
 *
 *   parley-gateway [-c FILE] [--check-config] [--help] [--key value ...]
 */
#include "config.h"
#include "echo.h"
#include "log.h"
#include "master.h"
#include "ops.h"
#include "options.h"
#include "register.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: parley-gateway [-c FILE] [--check-config] [--help] [--key value ...]\n"
                 "  -c FILE           read the config file (key = value lines)\n"
                 "  --check-config    validate the configuration and exit (0 ok, 2 bad)\n"
                 "  -h, --help        show this help\n"
                 "keys (file key, PARLEY_<KEY> env, --key flag):\n");
    pl_config_usage(pl_gw_options, out);
}

/* The path -> module table for cfg (pl_master_setup_fn): /ws first, so it
 * wins over an echo_path of /ws as it always has. */
static void setup(const pl_gw_config_t *cfg)
{
    pl_ops_clear();
    pl_chat_register();
    pl_echo_register(cfg->echo_path);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int check = 0, nrest = 0;
    char *rest[argc + 1];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "parley-gateway: %s needs a file name\n", argv[i]);
                return 2;
            }
            file = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            rest[nrest++] = argv[i];
        }
    }

    pl_gw_config_t cfg = {0};
    char err[512];
    if (pl_gw_config_load(&cfg, file, nrest, rest, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-gateway: %s\n", err);
        pl_config_free(pl_gw_options, &cfg);
        return 2;
    }
    if (check) {
        printf("parley-gateway: configuration ok\n");
        pl_config_free(pl_gw_options, &cfg);
        return 0;
    }
    pl_log_level = pl_log_level_parse(cfg.log_level);
    pl_log_init("gateway", -1);
    return pl_master_run(&cfg, file, nrest, rest, setup);
}
