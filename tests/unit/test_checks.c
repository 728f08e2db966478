/*
 * checks.c: the option value checks both programs' tables share. Each
 * accepts what the docs promise, refuses the rest with a reason that names
 * the value, and never writes past errlen.
 */
#include "checks.h"
#include "keys.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

typedef int (*check_fn)(const char *v, char *err, size_t errlen);

static void ok(check_fn f, const char *v)
{
    char err[256] = "untouched";
    int rc = f(v, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        fprintf(stderr, "refused '%s': %s\n", v, err);
}

static void bad(check_fn f, const char *v)
{
    char err[256] = "";
    int rc = f(v, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, -1);
    if (rc != -1)
        fprintf(stderr, "accepted '%s'\n", v);
    CU_ASSERT(err[0] != '\0'); /* a reason */
}

static void test_listen(void)
{
    ok(pl_check_listen, "0.0.0.0:8080");
    ok(pl_check_listen, "127.0.0.1:0"); /* any free port */
    ok(pl_check_listen, "localhost:65535");
    ok(pl_check_listen, "[::1]:9000");
    ok(pl_check_listen, "[::]:80");
    bad(pl_check_listen, "");
    bad(pl_check_listen, "8080");
    bad(pl_check_listen, ":8080"); /* no host */
    bad(pl_check_listen, "host:");
    bad(pl_check_listen, "host:65536");
    bad(pl_check_listen, "host:-1");
    bad(pl_check_listen, "host:80x");
    bad(pl_check_listen, "host:http");
    bad(pl_check_listen, "host:99999999999999999999999");

    char err[256];
    CU_ASSERT_EQUAL(pl_check_listen("nowhere", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nowhere"));

    ok(pl_check_listen_or_off, "");
    ok(pl_check_listen_or_off, "127.0.0.1:9100");
    bad(pl_check_listen_or_off, "off");
    bad(pl_check_listen_or_off, "127.0.0.1");
}

static void test_log_level(void)
{
    ok(pl_check_log_level, "error");
    ok(pl_check_log_level, "warn");
    ok(pl_check_log_level, "info");
    ok(pl_check_log_level, "debug");
    bad(pl_check_log_level, "");
    bad(pl_check_log_level, "INFO");
    bad(pl_check_log_level, "warning");
    bad(pl_check_log_level, "info ");
    char err[256];
    CU_ASSERT_EQUAL(pl_check_log_level("loud", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "loud"));
}

static void test_redis_url(void)
{
    ok(pl_check_redis_url, "redis://127.0.0.1:6379/0");
    ok(pl_check_redis_url, "redis://redis.example:6380/3");
    ok(pl_check_redis_url, "/run/redis/redis.sock");
    ok(pl_check_redis_url, "unix:///run/redis/redis.sock");
    bad(pl_check_redis_url, "");
    bad(pl_check_redis_url, "127.0.0.1:6379");
    bad(pl_check_redis_url, "http://127.0.0.1:6379/0");
    bad(pl_check_redis_url, "run/redis.sock"); /* relative path */
}

static void test_mysql_url(void)
{
    ok(pl_check_mysql_url, ""); /* off */
    ok(pl_check_mysql_url, "mysql://parley:pw@127.0.0.1:3306/parley");
    ok(pl_check_mysql_url, "/run/mysqld/mysqld.sock?user=root&database=parley");
    bad(pl_check_mysql_url, "mysql://parley@127.0.0.1/"); /* no database */
    bad(pl_check_mysql_url, "mysql://parley@127.0.0.1");  /* no database */
    bad(pl_check_mysql_url, "/run/mysqld/mysqld.sock");   /* no database */
    bad(pl_check_mysql_url, "/run/m.sock?database=");     /* empty database */
    bad(pl_check_mysql_url, "postgres://u@h/d");
    bad(pl_check_mysql_url, "mysql://u@h:0/d");
    char err[256];
    CU_ASSERT_EQUAL(pl_check_mysql_url("mysql://u@h/", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "database"));
}

/* max_text_size: 1 byte up to what the archiver's TEXT column holds; the
 * reason names that limit. */
static void test_text_size(void)
{
    ok(pl_check_text_size, "1");
    ok(pl_check_text_size, "4k");
    ok(pl_check_text_size, "65535");
    bad(pl_check_text_size, "64k"); /* 65536: one byte past TEXT */
    bad(pl_check_text_size, "1m");
    bad(pl_check_text_size, "0");
    bad(pl_check_text_size, "-1");
    bad(pl_check_text_size, "big");
    char err[256];
    CU_ASSERT_EQUAL(pl_check_text_size("1m", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "65535"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "archiver"));
    CU_ASSERT_EQUAL(PL_TEXT_MAX, 65535); /* deploy/sql/001_messages.sql: text TEXT */
}

/* A reason longer than errlen is cut, NUL-terminated, and nothing past
 * errlen is written. */
static void test_short_err_buffer(void)
{
    char err[16];
    memset(err, 'Z', sizeof(err));
    CU_ASSERT_EQUAL(pl_check_listen("a-rather-long-host-name-without-port", err, 8), -1);
    CU_ASSERT_EQUAL(strlen(err), 7);
    CU_ASSERT_EQUAL(err[8], 'Z');
    memset(err, 'Z', sizeof(err));
    CU_ASSERT_EQUAL(pl_check_mysql_url("mysql://u@h/", err, 8), -1);
    CU_ASSERT_EQUAL(strlen(err), 7);
    CU_ASSERT_EQUAL(err[8], 'Z');
}

PL_UNIT_SUITE(checks, PL_TEST(test_listen), PL_TEST(test_log_level), PL_TEST(test_redis_url),
              PL_TEST(test_mysql_url), PL_TEST(test_text_size), PL_TEST(test_short_err_buffer))
