/*
 * config.c, the loader, on a table of its own (one key of each type, a
 * bounded one, an unbounded one, one with a check): defaults, file,
 * environment and flags in that order, every value syntax, and the errors
 * a broken config must produce (key and file line named). The gateway's
 * table is test_options.c's.
 */
#include "config.h"
#include "unit.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    int64_t count;
    int flag;
    int64_t size;
    int64_t wait;
    char *path;
} cfg_t;

static int check_path(const char *v, char *err, size_t errlen)
{
    if (*v != '\0' && *v != '/') {
        snprintf(err, errlen, "'%s' is relative", v);
        return -1;
    }
    return 0;
}

/* unit_ prefix: the environment names (PARLEY_UNIT_*) cannot clash */
#define OFF(f) offsetof(cfg_t, f)
static const pl_opt_t table[] = {
    {"unit_name", PL_OPT_STR, OFF(name), "anon", 0, 0, NULL, "a name"},
    {"unit_count", PL_OPT_INT, OFF(count), "3", 1, 100, NULL, "a count"},
    {"unit_flag", PL_OPT_BOOL, OFF(flag), "no", 0, 0, NULL, "a flag"},
    {"unit_size", PL_OPT_SIZE, OFF(size), "4k", 0, 0, NULL, "a size"},
    {"unit_wait", PL_OPT_DURATION, OFF(wait), "10s", 100, 86400000, NULL, "a duration"},
    {"unit_path", PL_OPT_STR, OFF(path), "", 0, 0, check_path, NULL},
    PL_OPT_END,
};

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
    cfg_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(pl_config_load(table, &c, NULL, 0, NULL, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.name, "anon");
    CU_ASSERT_EQUAL(c.count, 3);
    CU_ASSERT_EQUAL(c.flag, 0);
    CU_ASSERT_EQUAL(c.size, 4096);
    CU_ASSERT_EQUAL(c.wait, 10000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.path); /* "" is a string, not NULL */
    CU_ASSERT_STRING_EQUAL(c.path, "");
    pl_config_free(table, &c);
    CU_ASSERT_PTR_NULL(c.name);
    CU_ASSERT_PTR_NULL(c.path);
}

/* Later sources win: file < PARLEY_<KEY> < flags; flags take --k=v or
 * --k v, dashes or underscores, any case. */
static void test_file_env_flags(void)
{
    cfg_t c = {0};
    char err[512] = "";
    char *path = write_tmp("# comment\n; also a comment\n\n  unit_name = \"quoted name\"  \n"
                           "unit_count=5\nunit_size = 1m\nunit_wait = 500ms\nunit_flag = on\n");
    setenv("PARLEY_UNIT_COUNT", "7", 1);
    setenv("PARLEY_UNIT_SIZE", "2k", 1);
    char *argv[] = {"--unit-size", "512b", "--UNIT_WAIT=2s", "--unit-path=/srv"};
    int rc = pl_config_load(table, &c, path, 4, argv, err, sizeof(err));
    unsetenv("PARLEY_UNIT_COUNT");
    unsetenv("PARLEY_UNIT_SIZE");
    unlink(path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c.name, "quoted name"); /* file only, quotes and blanks gone */
    CU_ASSERT_EQUAL(c.count, 7);                   /* env beats file */
    CU_ASSERT_EQUAL(c.size, 512);                  /* flag beats env and file */
    CU_ASSERT_EQUAL(c.wait, 2000);
    CU_ASSERT_EQUAL(c.flag, 1);
    CU_ASSERT_STRING_EQUAL(c.path, "/srv");
    pl_config_free(table, &c);
}

static int64_t set_get(const char *key, const char *value, int *rc)
{
    cfg_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(pl_config_load(table, &c, NULL, 0, NULL, err, sizeof(err)), 0);
    *rc = pl_config_set(table, &c, key, value, err, sizeof(err));
    int64_t v = strcmp(key, "unit_flag") == 0   ? c.flag
                : strcmp(key, "unit_size") == 0 ? c.size
                : strcmp(key, "unit_wait") == 0 ? c.wait
                                                : c.count;
    pl_config_free(table, &c);
    return v;
}

static void expect_value(const char *key, const char *value, int64_t want)
{
    int rc;
    int64_t v = set_get(key, value, &rc);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0 || v != want)
        fprintf(stderr, "%s = %s: rc %d, %lld\n", key, value, rc, (long long)v);
    CU_ASSERT_EQUAL(v, want);
}

static void expect_refused(const char *key, const char *value)
{
    int rc;
    set_get(key, value, &rc);
    if (rc != -1)
        fprintf(stderr, "%s = %s accepted\n", key, value);
    CU_ASSERT_EQUAL(rc, -1);
}

/* Every value syntax, the bounds (inclusive) and (0,0) = unbounded. */
static void test_value_syntax(void)
{
    expect_value("unit_flag", "YES", 1);
    expect_value("unit_flag", "true", 1);
    expect_value("unit_flag", "1", 1);
    expect_value("unit_flag", "Off", 0);
    expect_value("unit_flag", "false", 0);
    expect_refused("unit_flag", "2");
    expect_refused("unit_flag", "");
    expect_value("unit_count", "1", 1);
    expect_value("unit_count", "100", 100);
    expect_refused("unit_count", "0");
    expect_refused("unit_count", "101");
    expect_refused("unit_count", "5x");
    expect_refused("unit_count", "");
    expect_value("unit_size", "0", 0);
    expect_value("unit_size", "3KiB", 3072);
    expect_value("unit_size", "2g", 2LL << 30);
    expect_value("unit_size", "1024GB", 1LL << 40); /* unbounded */
    expect_refused("unit_size", "1t");
    expect_refused("unit_size", "-1");
    expect_refused("unit_size", "k");
    expect_value("unit_wait", "100ms", 100);
    expect_value("unit_wait", "90", 90000); /* bare = seconds */
    expect_value("unit_wait", "5m", 300000);
    expect_value("unit_wait", "2H", 7200000);
    expect_value("unit_wait", "1d", 86400000);
    expect_refused("unit_wait", "99ms");
    expect_refused("unit_wait", "2d");
    expect_refused("unit_wait", "1.5s");
    expect_refused("unit_wait", "9223372036854775807d"); /* overflow */
}

static void expect_file_error(const char *text, const char *needle1, const char *needle2)
{
    cfg_t c = {0};
    char err[512] = "";
    char *path = write_tmp(text);
    int rc = pl_config_load(table, &c, path, 0, NULL, err, sizeof(err));
    unlink(path);
    CU_ASSERT_EQUAL(rc, -1);
    if (strstr(err, needle1) == NULL || strstr(err, needle2) == NULL)
        fprintf(stderr, "'%s' lacks '%s' or '%s'\n", err, needle1, needle2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle1));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle2));
    pl_config_free(table, &c);
}

static void test_errors_name_key_and_line(void)
{
    expect_file_error("unit_name = x\nbogus = 1\n", "bogus", ":2)");
    expect_file_error("# one\n\nunit_count = many\n", "unit_count", ":3)");
    expect_file_error("unit_wait = 5 parsecs\n", "unit_wait", ":1)");
    expect_file_error("unit_count = 100000\n", "out of range", ":1)");
    expect_file_error("unit_flag = maybe\n", "unit_flag", ":1)");
    expect_file_error("unit_path = rel\n", "unit_path: 'rel' is relative", ":1)");
    expect_file_error("just some words\n", "key = value", ":1)");

    cfg_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL(
        pl_config_load(table, &c, "/nonexistent/parley.conf", 0, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/parley.conf"));
    pl_config_free(table, &c);
}

static void test_bad_flag_and_env(void)
{
    cfg_t c = {0};
    char err[512] = "";
    char *argv[] = {"--no-such-thing=1"};
    CU_ASSERT_EQUAL(pl_config_load(table, &c, NULL, 1, argv, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-thing"));
    pl_config_free(table, &c);

    char *argv2[] = {"--unit-count"};
    CU_ASSERT_EQUAL(pl_config_load(table, &c, NULL, 1, argv2, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing value"));
    pl_config_free(table, &c);

    char *argv3[] = {"unit_count=4"};
    CU_ASSERT_EQUAL(pl_config_load(table, &c, NULL, 1, argv3, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unit_count=4"));
    pl_config_free(table, &c);

    char *argv4[] = {"--unit-count=0"};
    CU_ASSERT_EQUAL(pl_config_load(table, &c, NULL, 1, argv4, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "command line"));
    pl_config_free(table, &c);

    setenv("PARLEY_UNIT_SIZE", "huge", 1);
    CU_ASSERT_EQUAL(pl_config_load(table, &c, NULL, 0, NULL, err, sizeof(err)), -1);
    unsetenv("PARLEY_UNIT_SIZE");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "PARLEY_UNIT_SIZE"));
    pl_config_free(table, &c);
}

/* pl_config_set replaces a string (the old one freed: ASan would see a
 * leak) and refuses unknown keys; a bad built-in default fails the load. */
static void test_set_and_bad_default(void)
{
    cfg_t c = {0};
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(pl_config_load(table, &c, NULL, 0, NULL, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(pl_config_set(table, &c, "unit_name", "one", err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(pl_config_set(table, &c, "UNIT-NAME", "two", err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.name, "two");
    CU_ASSERT_EQUAL(pl_config_set(table, &c, "unit_nam", "x", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown key"));
    CU_ASSERT_EQUAL(pl_config_set(table, &c, "unit_path", "rel", err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(c.path, ""); /* unchanged */
    pl_config_free(table, &c);

    static const pl_opt_t broken[] = {
        {"unit_count", PL_OPT_INT, OFF(count), "0", 1, 100, NULL, "a count"},
        PL_OPT_END,
    };
    CU_ASSERT_EQUAL(pl_config_load(broken, &c, NULL, 0, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "built-in default"));
}

/* --help: one line per key with its flag, help and default ("none" for
 * an empty one). */
static void test_usage(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    pl_config_usage(table, f);
    fclose(f);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    CU_ASSERT_EQUAL(lines, 6);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--unit_count"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "a count (default: 3)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--unit_path"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "(default: none)"));
    free(buf);
}

PL_UNIT_SUITE(config, PL_TEST(test_defaults), PL_TEST(test_file_env_flags),
              PL_TEST(test_value_syntax), PL_TEST(test_errors_name_key_and_line),
              PL_TEST(test_bad_flag_and_env), PL_TEST(test_set_and_bad_default),
              PL_TEST(test_usage))
