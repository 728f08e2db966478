/*
 * common/redis_url.c: every form both programs accept, the AUTH each
 * one sends, and that the config check rejects exactly what the parser
 * rejects (before, "redis://[::1]:6379/0" passed --check-config and then
 * every gateway worker exited at start).
 */
#include "checks.h"
#include "redis_url.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static pl_redis_url_t parse_ok(const char *url)
{
    pl_redis_url_t u;
    char err[256] = "";
    int rc = pl_redis_url_parse(url, &u, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "rejected %s: %s\n", url, err);
    CU_ASSERT_EQUAL(rc, 0);
    char cerr[256] = "";
    CU_ASSERT_EQUAL(pl_check_redis_url(url, cerr, sizeof(cerr)), 0);
    return u;
}

static void test_tcp(void)
{
    pl_redis_url_t u = parse_ok("redis://127.0.0.1:6380/2");
    CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.port, 6380);
    CU_ASSERT_EQUAL(u.db, 2);
    CU_ASSERT_PTR_NULL(u.socket);
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_PTR_NULL(u.password);
    pl_redis_url_free(&u);

    u = parse_ok("redis://cache.example");
    CU_ASSERT_STRING_EQUAL(u.host, "cache.example");
    CU_ASSERT_EQUAL(u.port, PL_REDIS_DEFAULT_PORT);
    CU_ASSERT_EQUAL(u.db, 0);
    pl_redis_url_free(&u);

    u = parse_ok("redis://h/");
    CU_ASSERT_EQUAL(u.db, 0);
    pl_redis_url_free(&u);

    /* an empty host is the local one (as the gateway always took it) */
    u = parse_ok("redis://:6390/1");
    CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.port, 6390);
    CU_ASSERT_EQUAL(u.db, 1);
    pl_redis_url_free(&u);
    u = parse_ok("redis://");
    CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.port, 6379);
    pl_redis_url_free(&u);
}

static void test_ipv6(void)
{
    pl_redis_url_t u = parse_ok("redis://[::1]:6379/0");
    CU_ASSERT_STRING_EQUAL(u.host, "::1");
    CU_ASSERT_EQUAL(u.port, 6379);
    CU_ASSERT_EQUAL(u.db, 0);
    pl_redis_url_free(&u);
    u = parse_ok("redis://[2001:db8::7]/3");
    CU_ASSERT_STRING_EQUAL(u.host, "2001:db8::7");
    CU_ASSERT_EQUAL(u.port, 6379);
    CU_ASSERT_EQUAL(u.db, 3);
    pl_redis_url_free(&u);
    u = parse_ok("redis://u:p@[fe80::1%eth0]:7000");
    CU_ASSERT_STRING_EQUAL(u.host, "fe80::1%eth0");
    CU_ASSERT_EQUAL(u.port, 7000);
    CU_ASSERT_STRING_EQUAL(u.user, "u");
    pl_redis_url_free(&u);
}

static void test_userinfo(void)
{
    pl_redis_url_t u = parse_ok("redis://:pw@host");
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_STRING_EQUAL(u.password, "pw");
    CU_ASSERT_STRING_EQUAL(u.host, "host");
    CU_ASSERT_EQUAL(u.port, 6379);
    pl_redis_url_free(&u);

    u = parse_ok("redis://archiver:s3cret@10.0.0.5:6381/4");
    CU_ASSERT_STRING_EQUAL(u.user, "archiver");
    CU_ASSERT_STRING_EQUAL(u.password, "s3cret");
    CU_ASSERT_STRING_EQUAL(u.host, "10.0.0.5");
    CU_ASSERT_EQUAL(u.port, 6381);
    CU_ASSERT_EQUAL(u.db, 4);
    pl_redis_url_free(&u);

    /* no ':' in the userinfo: all of it is the password (as redis-cli) */
    u = parse_ok("redis://justpw@h");
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_STRING_EQUAL(u.password, "justpw");
    pl_redis_url_free(&u);

    /* the last '@' ends the userinfo: '@' and ':' may be in the password */
    u = parse_ok("redis://u:p@ss:w@h:1/2");
    CU_ASSERT_STRING_EQUAL(u.user, "u");
    CU_ASSERT_STRING_EQUAL(u.password, "p@ss:w");
    CU_ASSERT_STRING_EQUAL(u.host, "h");
    CU_ASSERT_EQUAL(u.port, 1);
    pl_redis_url_free(&u);

    /* an empty password is still a password */
    u = parse_ok("redis://u:@h");
    CU_ASSERT_STRING_EQUAL(u.user, "u");
    CU_ASSERT_STRING_EQUAL(u.password, "");
    pl_redis_url_free(&u);
}

static void test_sockets(void)
{
    pl_redis_url_t u = parse_ok("/tmp/r.sock?db=3");
    CU_ASSERT_STRING_EQUAL(u.socket, "/tmp/r.sock");
    CU_ASSERT_PTR_NULL(u.host);
    CU_ASSERT_EQUAL(u.port, 0);
    CU_ASSERT_EQUAL(u.db, 3);
    pl_redis_url_free(&u);
    /* before, the gateway connected to the path "/tmp/r.sock?db=3" */
    u = parse_ok("unix:///var/run/redis/redis.sock?db=12");
    CU_ASSERT_STRING_EQUAL(u.socket, "/var/run/redis/redis.sock");
    CU_ASSERT_EQUAL(u.db, 12);
    pl_redis_url_free(&u);
    u = parse_ok("unix:///r.sock");
    CU_ASSERT_STRING_EQUAL(u.socket, "/r.sock");
    CU_ASSERT_EQUAL(u.db, 0);
    pl_redis_url_free(&u);
}

static void test_rejected(void)
{
    static const char *bad[] = {
        "",
        "http://h",
        "rediss://h",             /* TLS is not supported */
        "redis://h:99999",        /* port out of range */
        "redis://h:0",            /* port 0 */
        "redis://h:",             /* empty port */
        "redis://h:63a",          /* junk port */
        "redis://h/x",            /* db not a number */
        "redis://h/1/2",          /* more path */
        "redis://h/-1",           /* negative db */
        "redis://h/99999999",     /* db past PL_REDIS_MAX_DB */
        "redis://h/0?timeout=1",  /* queries are not understood */
        "redis://h?db=1",         /* ... nor a '?' in the host */
        "redis://::1:6379/0",     /* IPv6 without brackets */
        "redis://[::1/0",         /* unterminated '[' */
        "redis://[::1]x:6379",    /* junk after ']' */
        "redis://[]:6379",        /* empty IPv6 */
        "redis://ho st",          /* space in the host */
        "unix://relative.sock",   /* a socket path must be absolute */
        "unix://",                /* no path */
        "/tmp/r.sock?db=x",       /* bad db */
        "/tmp/r.sock?password=x", /* only ?db=N */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pl_redis_url_t u;
        char err[256] = "";
        int rc = pl_redis_url_parse(bad[i], &u, err, sizeof(err));
        if (rc != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT(err[0] != '\0');
        CU_ASSERT_PTR_NULL(u.host);
        CU_ASSERT_PTR_NULL(u.password);
        char cerr[256] = "";
        CU_ASSERT_EQUAL(pl_check_redis_url(bad[i], cerr, sizeof(cerr)), -1);
        CU_ASSERT_STRING_EQUAL(cerr, err); /* the check says what the parser says */
    }
}

/* The one AUTH both programs send. Before, the archiver sent
 * "AUTH password" for "user:password@" (logging in as the default user)
 * and ignored a password given without ':'. */
static void test_auth_command(void)
{
    const char *argv[3];
    size_t lens[3];
    pl_redis_url_t u = parse_ok("redis://h:1/0");
    CU_ASSERT_EQUAL(pl_redis_url_auth(&u, argv, lens), 0);
    pl_redis_url_free(&u);

    u = parse_ok("redis://:secret@h");
    CU_ASSERT_EQUAL_FATAL(pl_redis_url_auth(&u, argv, lens), 2);
    CU_ASSERT_STRING_EQUAL(argv[0], "AUTH");
    CU_ASSERT_EQUAL(lens[0], 4);
    CU_ASSERT_STRING_EQUAL(argv[1], "secret");
    CU_ASSERT_EQUAL(lens[1], 6);
    pl_redis_url_free(&u);

    u = parse_ok("redis://bob:secret@h");
    CU_ASSERT_EQUAL_FATAL(pl_redis_url_auth(&u, argv, lens), 3);
    CU_ASSERT_STRING_EQUAL(argv[1], "bob");
    CU_ASSERT_EQUAL(lens[1], 3);
    CU_ASSERT_STRING_EQUAL(argv[2], "secret");
    pl_redis_url_free(&u);

    u = parse_ok("redis://pw@h");
    CU_ASSERT_EQUAL_FATAL(pl_redis_url_auth(&u, argv, lens), 2);
    CU_ASSERT_STRING_EQUAL(argv[1], "pw");
    pl_redis_url_free(&u);
}

PL_UNIT_SUITE(redis_url, PL_TEST(test_tcp), PL_TEST(test_ipv6), PL_TEST(test_userinfo),
              PL_TEST(test_sockets), PL_TEST(test_rejected), PL_TEST(test_auth_command))
