/*
 * parley-gateway entry point: parse the command line and the config, then
 * hand over to the master (not yet written).
 */
#include "config.h"
#include "log.h"
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    pl_gw_config_t cfg = {0};
    char err[512];
    const char *file = NULL;
    if (argc > 2 && strcmp(argv[1], "-c") == 0)
        file = argv[2];
    if (pl_config_load(pl_gw_options, &cfg, file, 0, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-gateway: %s\n", err);
        return 2;
    }
    pl_config_free(pl_gw_options, &cfg);
    return 0;
}
