/*
 * archiver/options.c: the defaults and the checks of the archiver's
 * option table.
 */
#include "../../archiver/options.h"
#include "config.h"
#include "unit.h"

#include <string.h>

static void test_options(void)
{
    pl_arch_config_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(pl_config_load(pl_arch_options, &c, NULL, 0, NULL, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c.batch_size, 1000);
    CU_ASSERT_EQUAL(c.claim_idle, 30000);
    CU_ASSERT_STRING_EQUAL(c.stream, "parley:archive");
    CU_ASSERT_STRING_EQUAL(c.group, "archiver");
    CU_ASSERT_STRING_EQUAL(c.metrics_listen, "127.0.0.1:9108");
    pl_config_free(pl_arch_options, &c);

    char *argv1[] = {"--mysql_url", "mysql://u@h/"};
    CU_ASSERT_EQUAL(pl_config_load(pl_arch_options, &c, NULL, 2, argv1, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mysql_url"));
    pl_config_free(pl_arch_options, &c);
    char *argv2[] = {"--batch-size=0"};
    CU_ASSERT_EQUAL(pl_config_load(pl_arch_options, &c, NULL, 1, argv2, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "batch_size"));
    pl_config_free(pl_arch_options, &c);
    char *argv3[] = {"--redis_url", "http://x"};
    CU_ASSERT_EQUAL(pl_config_load(pl_arch_options, &c, NULL, 2, argv3, err, sizeof(err)), -1);
    pl_config_free(pl_arch_options, &c);
    char *argv4[] = {"--metrics_listen", "", "--claim_idle", "1s"};
    CU_ASSERT_EQUAL(pl_config_load(pl_arch_options, &c, NULL, 4, argv4, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c.claim_idle, 1000);
    pl_config_free(pl_arch_options, &c);
}

PL_UNIT_SUITE(archiver_options, PL_TEST(test_options))
