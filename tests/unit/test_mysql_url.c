/*
 * mysql_url.c: the edges of the URL forms in mysql_url.h (ports, IPv6,
 * query parameters overriding the URL, percent escapes, what "absent"
 * means for each part), refusals leaving the struct zeroed, and the
 * password-free description; then the everyday forms (TCP, sockets, the
 * refusals), which lived in test_archiver.c until each archiver file got
 * its own test file.
 */
#include "mysql_url.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static pl_mysql_url_t parse_ok(const char *url)
{
    pl_mysql_url_t u;
    char err[256] = "";
    int rc = pl_mysql_url_parse(url, &u, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "refused %s: %s\n", url, err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return u;
}

static void parse_bad(const char *url, const char *needle)
{
    pl_mysql_url_t u;
    memset(&u, 0xff, sizeof(u)); /* must come back zeroed */
    char err[256] = "";
    int rc = pl_mysql_url_parse(url, &u, err, sizeof(err));
    if (rc != -1)
        fprintf(stderr, "accepted %s\n", url);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(u.user == NULL && u.password == NULL && u.host == NULL && u.socket == NULL &&
              u.database == NULL && u.port == 0);
    CU_ASSERT(err[0] != '\0');
    if (needle && strstr(err, needle) == NULL) {
        fprintf(stderr, "%s: '%s' lacks '%s'\n", url, err, needle);
        CU_FAIL("reason does not say why");
    }
}

static void test_ports(void)
{
    pl_mysql_url_t u = parse_ok("mysql://u@h:1/d");
    CU_ASSERT_EQUAL(u.port, 1);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://u@h:65535/d");
    CU_ASSERT_EQUAL(u.port, 65535);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://u@h:03306/d"); /* leading zero: still decimal */
    CU_ASSERT_EQUAL(u.port, 3306);
    pl_mysql_url_free(&u);
    parse_bad("mysql://u@h:65536/d", "port");
    parse_bad("mysql://u@h:/d", "port");
    parse_bad("mysql://u@h:-1/d", "port");
    parse_bad("mysql://u@h: 1/d", "port");
    parse_bad("mysql://u@h:99999999999999999999999/d", "port"); /* no overflow wrap */
    parse_bad("mysql://u@h:4294970602/d", "port");              /* 2^32 + 3306 */
}

static void test_ipv6(void)
{
    pl_mysql_url_t u = parse_ok("mysql://u@[fe80::1%25eth0]/d");
    CU_ASSERT_STRING_EQUAL(u.host, "fe80::1%25eth0"); /* host is not percent-decoded */
    CU_ASSERT_EQUAL(u.port, PL_MYSQL_DEFAULT_PORT);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://[::1]:3307");
    CU_ASSERT_STRING_EQUAL(u.host, "::1");
    CU_ASSERT_EQUAL(u.port, 3307);
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_PTR_NULL(u.database);
    char d[128];
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "@[::1]:3307/");
    pl_mysql_url_free(&u);
    parse_bad("mysql://u@[::1]x/d", "']'");
    parse_bad("mysql://u@[::1]:/d", "port");
    parse_bad("mysql://u@[]/d", "neither");
}

/* No path, an empty path, an empty user, no credentials at all. */
static void test_absent_parts(void)
{
    pl_mysql_url_t u = parse_ok("mysql://db.example");
    CU_ASSERT_STRING_EQUAL(u.host, "db.example");
    CU_ASSERT(u.user == NULL && u.password == NULL && u.database == NULL && u.socket == NULL);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://h/");
    CU_ASSERT_PTR_NULL(u.database);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://:pw@h/d"); /* no user, a password */
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_STRING_EQUAL(u.password, "pw");
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://@h/d");
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_PTR_NULL(u.password);
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://u@h/d?");
    CU_ASSERT_STRING_EQUAL(u.database, "d");
    pl_mysql_url_free(&u);
    parse_bad("mysql://", "neither");
    parse_bad("mysql://u:p@", "neither");
    parse_bad("MYSQL://u@h/d", NULL);
    parse_bad(NULL, "empty");
}

/* Query parameters override the URL's parts (the last one wins), a
 * socket makes host and port irrelevant, and unknown keys are refused. */
static void test_query(void)
{
    pl_mysql_url_t u = parse_ok("mysql://url-user:url-pw@h:3307/urldb?user=q%20user&database=qdb"
                                "&password=&database=last");
    CU_ASSERT_STRING_EQUAL(u.user, "q user");
    CU_ASSERT_STRING_EQUAL(u.password, ""); /* explicit empty, not absent */
    CU_ASSERT_STRING_EQUAL(u.database, "last");
    CU_ASSERT_STRING_EQUAL(u.host, "h");
    CU_ASSERT_EQUAL(u.port, 3307);
    pl_mysql_url_free(&u);

    u = parse_ok("mysql://u@db.example:3307/d?socket=/run/s.sock");
    CU_ASSERT_STRING_EQUAL(u.socket, "/run/s.sock");
    CU_ASSERT_PTR_NULL(u.host);
    CU_ASSERT_EQUAL(u.port, 0);
    char d[128];
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "u@unix:/run/s.sock/d");
    pl_mysql_url_free(&u);

    u = parse_ok("/run/s.sock?socket=/other.sock"); /* the query wins here too */
    CU_ASSERT_STRING_EQUAL(u.socket, "/other.sock");
    pl_mysql_url_free(&u);

    parse_bad("mysql://u@h/d?port=3307", "port");
    parse_bad("mysql://u@h/d?user", "key=value");
    parse_bad("mysql://u@h/d?=x", "key=value");
    parse_bad("mysql://u@h/d?user=a&&x=1", "key=value");
    parse_bad("mysql://u@h/d?user=%4", "escape");
    parse_bad("/run/s.sock?socket=relative.sock", "absolute");
}

/* Escapes: any case of hex digit; a short, non-hex or NUL escape is an
 * error; an escaped '/' is allowed in a database name, a raw one is not. */
static void test_escapes(void)
{
    pl_mysql_url_t u = parse_ok("mysql://%61%6C%69%63%65:%7e%7E@h/a%2fb");
    CU_ASSERT_STRING_EQUAL(u.user, "alice");
    CU_ASSERT_STRING_EQUAL(u.password, "~~");
    CU_ASSERT_STRING_EQUAL(u.database, "a/b");
    pl_mysql_url_free(&u);
    u = parse_ok("mysql://u:%25@h/100%25");
    CU_ASSERT_STRING_EQUAL(u.password, "%");
    CU_ASSERT_STRING_EQUAL(u.database, "100%");
    pl_mysql_url_free(&u);
    /* the last '@' ends the credentials: raw '@' and ':' in the password */
    u = parse_ok("mysql://u:a@b:c@h:3308/d");
    CU_ASSERT_STRING_EQUAL(u.user, "u");
    CU_ASSERT_STRING_EQUAL(u.password, "a@b:c");
    CU_ASSERT_STRING_EQUAL(u.host, "h");
    CU_ASSERT_EQUAL(u.port, 3308);
    pl_mysql_url_free(&u);
    parse_bad("mysql://u:%@h/d", "password");
    parse_bad("mysql://u:%g0@h/d", "password");
    parse_bad("mysql://u@h/d%0", "database");
    parse_bad("mysql://u@h/d%00x", "database");
    parse_bad("mysql://u@h/a/b", "'/'");
}

/* describe never shows the password, and cuts to the buffer. */
static void test_describe(void)
{
    pl_mysql_url_t u = parse_ok("mysql://arch:hunter2@10.0.0.5/parley");
    char d[64];
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "arch@10.0.0.5:3306/parley");
    CU_ASSERT_PTR_NULL(strstr(d, "hunter2"));
    char small[8];
    CU_ASSERT_PTR_EQUAL(pl_mysql_url_describe(&u, small, sizeof(small)), small);
    CU_ASSERT_STRING_EQUAL(small, "arch@10");
    pl_mysql_url_free(&u);
    /* free zeroes, and a zeroed struct frees again */
    CU_ASSERT(u.user == NULL && u.password == NULL && u.host == NULL && u.database == NULL);
    pl_mysql_url_free(&u);
}

/* ---- the everyday forms ---- */

static void test_mysql_url_tcp(void)
{
    pl_mysql_url_t u;
    char err[256] = "";
    CU_ASSERT_EQUAL_FATAL(
        pl_mysql_url_parse("mysql://arch:s3cret@db.example:3307/parley", &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.user, "arch");
    CU_ASSERT_STRING_EQUAL(u.password, "s3cret");
    CU_ASSERT_STRING_EQUAL(u.host, "db.example");
    CU_ASSERT_EQUAL(u.port, 3307);
    CU_ASSERT_PTR_NULL(u.socket);
    CU_ASSERT_STRING_EQUAL(u.database, "parley");
    char d[256];
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "arch@db.example:3307/parley");
    CU_ASSERT_PTR_NULL(strstr(d, "s3cret"));
    pl_mysql_url_free(&u);

    CU_ASSERT_EQUAL_FATAL(pl_mysql_url_parse("mysql://root@127.0.0.1/db", &u, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(u.port, PL_MYSQL_DEFAULT_PORT);
    CU_ASSERT_PTR_NULL(u.password);
    pl_mysql_url_free(&u);

    /* percent-encoding and an '@' in the password */
    CU_ASSERT_EQUAL_FATAL(
        pl_mysql_url_parse("mysql://a%40b:p@ss%3Aw%2Fd@[::1]:3306/my%5Fdb", &u, err, sizeof(err)),
        0);
    CU_ASSERT_STRING_EQUAL(u.user, "a@b");
    CU_ASSERT_STRING_EQUAL(u.password, "p@ss:w/d");
    CU_ASSERT_STRING_EQUAL(u.host, "::1");
    CU_ASSERT_STRING_EQUAL(u.database, "my_db");
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "a@b@[::1]:3306/my_db");
    pl_mysql_url_free(&u);

    /* empty password is not "no password" */
    CU_ASSERT_EQUAL_FATAL(pl_mysql_url_parse("mysql://u:@h/d", &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.password, "");
    pl_mysql_url_free(&u);
}

static void test_mysql_url_socket(void)
{
    pl_mysql_url_t u;
    char err[256] = "";
    CU_ASSERT_EQUAL_FATAL(pl_mysql_url_parse("mysql://root@localhost/parley?socket=/run/my.sock",
                                             &u, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(u.socket, "/run/my.sock");
    CU_ASSERT_PTR_NULL(u.host);
    CU_ASSERT_EQUAL(u.port, 0);
    CU_ASSERT_STRING_EQUAL(u.database, "parley");
    pl_mysql_url_free(&u);

    CU_ASSERT_EQUAL_FATAL(
        pl_mysql_url_parse("mysql://u:p@/db?socket=%2Ftmp%2Fx.sock", &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.socket, "/tmp/x.sock");
    pl_mysql_url_free(&u);

    CU_ASSERT_EQUAL_FATAL(pl_mysql_url_parse("/var/run/mysqld/mysqld.sock", &u, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(u.socket, "/var/run/mysqld/mysqld.sock");
    CU_ASSERT_PTR_NULL(u.user);
    CU_ASSERT_PTR_NULL(u.database);
    pl_mysql_url_free(&u);

    CU_ASSERT_EQUAL_FATAL(pl_mysql_url_parse("/tmp/m.sock?user=root&password=x&database=parley", &u,
                                             err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(u.socket, "/tmp/m.sock");
    CU_ASSERT_STRING_EQUAL(u.user, "root");
    CU_ASSERT_STRING_EQUAL(u.password, "x");
    CU_ASSERT_STRING_EQUAL(u.database, "parley");
    char d[256];
    pl_mysql_url_describe(&u, d, sizeof(d));
    CU_ASSERT_STRING_EQUAL(d, "root@unix:/tmp/m.sock/parley");
    pl_mysql_url_free(&u);
}

static void test_mysql_url_errors(void)
{
    static const char *bad[] = {
        "",
        "postgres://u@h/d",
        "mysql://u@h:notaport/d",
        "mysql://u@h:0/d",
        "mysql://u@h:70000/d",
        "mysql://u@/d",             /* neither host nor socket */
        "mysql://u@h/d?sock=/x",    /* unknown parameter */
        "mysql://u@h/d?socket",     /* not key=value */
        "mysql://u@h/d?socket=rel", /* socket not absolute */
        "mysql://u%zz@h/d",         /* bad escape */
        "mysql://u%00@h/d",         /* encoded NUL */
        "mysql://u@h/a/b",          /* '/' in database */
        "mysql://u@[::1/d",         /* unterminated [ */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pl_mysql_url_t u;
        char err[256] = "";
        int rc = pl_mysql_url_parse(bad[i], &u, err, sizeof(err));
        if (rc != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT(err[0] != '\0');
        CU_ASSERT_PTR_NULL(u.host);
        CU_ASSERT_PTR_NULL(u.user);
    }
}

PL_UNIT_SUITE(mysql_url, PL_TEST(test_ports), PL_TEST(test_ipv6), PL_TEST(test_absent_parts),
              PL_TEST(test_query), PL_TEST(test_escapes), PL_TEST(test_describe),
              PL_TEST(test_mysql_url_tcp), PL_TEST(test_mysql_url_socket),
              PL_TEST(test_mysql_url_errors))
