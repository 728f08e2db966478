/*
 * config.c: defaults, file, environment and flags, and the errors a broken
 * config must produce (key and file line named).
 */
#include "config.h"
#include "options.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/pl-test-config-XXXXXX");
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void)
{
    pl_gw_config_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(pl_config_load(pl_gw_options, &c, NULL, 0, NULL, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.listen, "0.0.0.0:8080");
    CU_ASSERT_EQUAL(c.max_message_size, 65536);
    CU_ASSERT_EQUAL(c.ping_interval, 25000);
    CU_ASSERT_EQUAL(c.history_ttl, 7LL * 86400000);
    CU_ASSERT_STRING_EQUAL(c.echo_path, "");
    pl_config_free(pl_gw_options, &c);
}

static void test_file_env_flags(void)
{
    pl_gw_config_t c = {0};
    char err[512] = "";
    char *path = write_tmp("# comment\nlisten = 127.0.0.1:9000\nworkers=3\n"
                           "ping_interval = 500ms\nmax_message_size = 1m\necho_path = \"/echo\"\n");
    setenv("PARLEY_WORKERS", "5", 1);
    char *argv[] = {"--log-level", "debug", "--drain_timeout=2s"};
    int rc = pl_config_load(pl_gw_options, &c, path, 3, argv, err, sizeof(err));
    unsetenv("PARLEY_WORKERS");
    unlink(path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:9000");
    CU_ASSERT_EQUAL(c.workers, 5); /* env beats file */
    CU_ASSERT_EQUAL(c.ping_interval, 500);
    CU_ASSERT_EQUAL(c.max_message_size, 1 << 20);
    CU_ASSERT_STRING_EQUAL(c.echo_path, "/echo");
    CU_ASSERT_STRING_EQUAL(c.log_level, "debug");
    CU_ASSERT_EQUAL(c.drain_timeout, 2000);
    pl_config_free(pl_gw_options, &c);
}

static void expect_file_error(const char *text, const char *needle1, const char *needle2)
{
    pl_gw_config_t c = {0};
    char err[512] = "";
    char *path = write_tmp(text);
    int rc = pl_config_load(pl_gw_options, &c, path, 0, NULL, err, sizeof(err));
    unlink(path);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle1));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle2));
    pl_config_free(pl_gw_options, &c);
}

static void test_errors_name_key_and_line(void)
{
    expect_file_error("listen = 127.0.0.1:1\nbogus = 1\n", "bogus", ":2)");
    expect_file_error("\n\nworkers = many\n", "workers", ":3)");
    expect_file_error("ping_interval = 5 parsecs\n", "ping_interval", ":1)");
    expect_file_error("workers = 100000\n", "out of range", ":1)");
    expect_file_error("log_level = loud\n", "log_level", ":1)");
    expect_file_error("listen = nowhere\n", "listen", ":1)");
    expect_file_error("just some words\n", "key = value", ":1)");
}

static void test_bad_flag_and_env(void)
{
    pl_gw_config_t c = {0};
    char err[512] = "";
    char *argv[] = {"--no-such-thing=1"};
    CU_ASSERT_EQUAL(pl_config_load(pl_gw_options, &c, NULL, 1, argv, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-thing"));
    pl_config_free(pl_gw_options, &c);

    setenv("PARLEY_MAX_MESSAGE_SIZE", "huge", 1);
    CU_ASSERT_EQUAL(pl_config_load(pl_gw_options, &c, NULL, 0, NULL, err, sizeof(err)), -1);
    unsetenv("PARLEY_MAX_MESSAGE_SIZE");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "PARLEY_MAX_MESSAGE_SIZE"));
    pl_config_free(pl_gw_options, &c);
}

static void test_parsers(void)
{
    int64_t v;
    int b;
    CU_ASSERT_EQUAL(pl_parse_duration_ms("10", &v), 0);
    CU_ASSERT_EQUAL(v, 10000);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("250ms", &v), 0);
    CU_ASSERT_EQUAL(v, 250);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("-1s", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_size("4k", &v), 0);
    CU_ASSERT_EQUAL(v, 4096);
    CU_ASSERT_EQUAL(pl_parse_size("99999999999999999999", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_bool("yes", &b), 0);
    CU_ASSERT_EQUAL(b, 1);
    CU_ASSERT_EQUAL(pl_parse_bool("maybe", &b), -1);
}

PL_UNIT_SUITE(config, PL_TEST(test_defaults), PL_TEST(test_file_env_flags),
              PL_TEST(test_errors_name_key_and_line), PL_TEST(test_bad_flag_and_env),
              PL_TEST(test_parsers))
