/*
 * The archiver's pure parts: mysql:// URLs, stream entry ->
 * row validation, INSERT building and escaping (on an unconnected MYSQL
 * handle), duplicate/conflict classification, stream IDs, migration file
 * names and the metrics text.
 */
#include "../../archiver/metrics.h"
#include "../../archiver/migrate.h"
#include "../../archiver/options.h"
#include "../../archiver/reader.h"
#include "../../archiver/streamid.h"
#include "../../archiver/writer.h"
#include "mysql_url.h"
#include "unit.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- mysql_url ---- */

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

/* ---- stream ids ---- */

static void test_stream_ids(void)
{
    pl_arch_stream_id_t a, b;
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("1700000000000-5", 15, &a), 0);
    CU_ASSERT_EQUAL(a.ms, 1700000000000ULL);
    CU_ASSERT_EQUAL(a.seq, 5);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("42", 2, &b), 0);
    CU_ASSERT_EQUAL(b.seq, 0);
    CU_ASSERT(pl_arch_stream_id_cmp(b, a) < 0);
    CU_ASSERT(pl_arch_stream_id_cmp(a, a) == 0);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("1-x", 3, &b), -1);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("-1", 2, &b), -1);
    pl_arch_stream_id_t n = pl_arch_stream_id_next(a);
    CU_ASSERT_EQUAL(n.seq, 6);
    pl_arch_stream_id_t max = {7, UINT64_MAX};
    n = pl_arch_stream_id_next(max);
    CU_ASSERT_EQUAL(n.ms, 8);
    CU_ASSERT_EQUAL(n.seq, 0);
    char buf[48];
    pl_arch_stream_id_format(a, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "1700000000000-5");
}

/* ---- rows ---- */

#define B(s) ((pl_arch_bytes_t){s, sizeof(s) - 1})

static void test_row_parse_ok(void)
{
    /* text with NUL, quote, backslash and a 4-byte emoji; an extra field */
    pl_arch_bytes_t f[] = {B("room"),   B("lobby"),
                           B("seq"),    B("18446744073709551615"),
                           B("msg_id"), B("01HX"),
                           B("from"),   B("alice"),
                           B("text"),   B("a\0'\\\xf0\x9f\x98\x80"),
                           B("ts"),     B("1764000000123"),
                           B("extra"),  B("ignored")};
    pl_arch_row_t r;
    const char *why = NULL;
    CU_ASSERT_EQUAL_FATAL(pl_arch_row_parse(&r, f, PL_ARRAY_LEN(f), &why), 0);
    CU_ASSERT_EQUAL(r.seq, UINT64_MAX);
    CU_ASSERT_EQUAL(r.ts_ms, 1764000000123ULL);
    CU_ASSERT_EQUAL(r.text.n, 8);
    CU_ASSERT_EQUAL(r.room.n, 5);
    CU_ASSERT_EQUAL(r.sender.n, 5);
}

static void expect_bad(pl_arch_bytes_t *f, size_t n, const char *needle)
{
    pl_arch_row_t r;
    const char *why = NULL;
    CU_ASSERT_EQUAL(pl_arch_row_parse(&r, f, n, &why), -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(why);
    if (strstr(why, needle) == NULL)
        fprintf(stderr, "reason '%s' lacks '%s'\n", why, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, needle));
}

static void test_row_parse_bad(void)
{
    pl_arch_bytes_t f[12] = {B("room"), B("r"), B("seq"),  B("1"), B("msg_id"), B("m"),
                             B("from"), B("u"), B("text"), B("t"), B("ts"),     B("1")};
    pl_arch_bytes_t g[12];
    memcpy(g, f, sizeof(f));
    expect_bad(g, 10, "missing field ts");
    g[3] = B("12a");
    expect_bad(g, 12, "seq");
    g[3] = B("-1");
    expect_bad(g, 12, "seq");
    g[3] = B("");
    expect_bad(g, 12, "seq");
    g[3] = B("18446744073709551616"); /* 2^64 */
    expect_bad(g, 12, "seq");
    memcpy(g, f, sizeof(f));
    g[1] = B("");
    expect_bad(g, 12, "room");
    g[1] = B("\xc3\x28"); /* invalid UTF-8 */
    expect_bad(g, 12, "room");
    memcpy(g, f, sizeof(f));
    g[9] = B("\xed\xa0\x80"); /* surrogate */
    expect_bad(g, 12, "text");
    memcpy(g, f, sizeof(f));
    g[11] = B("999999999999999999");
    expect_bad(g, 12, "ts");
    memcpy(g, f, sizeof(f));
    g[5] = B("");
    expect_bad(g, 12, "msg_id");
    expect_bad(g, 11, "odd");
    /* limits: 128 emoji rooms are fine, 129 are not */
    char room[4 * 129];
    for (int i = 0; i < 129; i++)
        memcpy(room + 4 * i, "\xf0\x9f\x98\x80", 4);
    memcpy(g, f, sizeof(f));
    g[1] = (pl_arch_bytes_t){room, 4 * 128};
    pl_arch_row_t r;
    const char *why;
    CU_ASSERT_EQUAL(pl_arch_row_parse(&r, g, 12, &why), 0);
    g[1] = (pl_arch_bytes_t){room, 4 * 129};
    expect_bad(g, 12, "room");
}

static void test_format_ts(void)
{
    char buf[24];
    pl_arch_format_ts(0, buf);
    CU_ASSERT_STRING_EQUAL(buf, "1970-01-01 00:00:00.000");
    pl_arch_format_ts(1764000000123ULL, buf);
    CU_ASSERT_STRING_EQUAL(buf, "2025-11-24 16:00:00.123");
    pl_arch_format_ts(PL_ARCH_TS_MAX, buf);
    CU_ASSERT_STRING_EQUAL(buf, "9999-12-31 23:59:59.999");
}

static pl_arch_row_t mkrow(const char *room, uint64_t seq, const char *msg_id)
{
    pl_arch_row_t r = {0};
    r.room = (pl_arch_bytes_t){room, strlen(room)};
    r.seq = seq;
    r.msg_id = (pl_arch_bytes_t){msg_id, strlen(msg_id)};
    r.sender = (pl_arch_bytes_t){"bob", 3};
    r.text = (pl_arch_bytes_t){"hi", 2};
    r.ts_ms = 1000;
    return r;
}

static void test_build_insert_escapes(void)
{
    MYSQL *m = mysql_init(NULL);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    pl_arch_row_t rows[2] = {mkrow("it's", 7, "m1"), mkrow("r2", 8, "m2")};
    rows[0].text = (pl_arch_bytes_t){"a\0b'c\"d\\e\n\xf0\x9f\x98\x80", 14};
    pl_buf_t b = {0};
    size_t k = pl_arch_build_insert(&b, m, rows, 2, 1 << 20);
    CU_ASSERT_EQUAL(k, 2);
    static const char want[] =
        "INSERT IGNORE INTO messages (room, seq, msg_id, sender, text, created_at) VALUES "
        "('it\\'s',7,'m1','bob','a\\0b\\'c\\\"d\\\\e\\n\xf0\x9f\x98\x80','1970-01-01 "
        "00:00:01.000'),"
        "('r2',8,'m2','bob','hi','1970-01-01 00:00:01.000')";
    CU_ASSERT_EQUAL(b.n, sizeof(want) - 1);
    CU_ASSERT(memcmp(b.p, want, sizeof(want) - 1) == 0);
    CU_ASSERT_PTR_NULL(memchr(b.p, '\0', b.n)); /* NUL went out escaped */

    pl_arch_build_keycheck(&b, m, rows, 2);
    CU_ASSERT_STRING_EQUAL(pl_buf_cstr(&b),
                           "SELECT room, seq, msg_id FROM messages WHERE (room, seq) IN "
                           "(('it\\'s',7),('r2',8))");
    pl_buf_free(&b);
    mysql_close(m);
}

static void test_build_insert_splits(void)
{
    MYSQL *m = mysql_init(NULL);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    enum { N = 50 };
    pl_arch_row_t rows[N];
    for (int i = 0; i < N; i++)
        rows[i] = mkrow("room", (uint64_t)i, "id");
    pl_buf_t b = {0};
    size_t total = 0, stmts = 0;
    while (total < N) {
        size_t k = pl_arch_build_insert(&b, m, rows + total, N - total, 1000);
        CU_ASSERT(k >= 1);
        CU_ASSERT(b.n <= 1000);
        total += k;
        stmts++;
    }
    CU_ASSERT_EQUAL(total, N);
    CU_ASSERT(stmts > 1);
    /* a single row is always taken, even over the limit */
    CU_ASSERT_EQUAL(pl_arch_build_insert(&b, m, rows, N, 10), 1);
    /* a generous limit takes the whole batch in one statement */
    CU_ASSERT_EQUAL(pl_arch_build_insert(&b, m, rows, N, 1 << 20), N);
    pl_buf_free(&b);
    mysql_close(m);
}

static void test_classify(void)
{
    pl_arch_row_t rows[4] = {mkrow("a", 1, "x"), mkrow("a", 2, "y"), mkrow("b", 1, "z"),
                             mkrow("a ", 1, "w")};
    /* stored: a/1 with x (dup ok), a/2 with OTHER (conflict), b/1 absent (missing),
     * "a " is a different room than "a" */
    pl_arch_row_t found[3] = {mkrow("a", 1, "x"), mkrow("a", 2, "OTHER"), mkrow("a ", 1, "w")};
    uint8_t st[4];
    size_t stored = pl_arch_classify(rows, 4, found, 3, st);
    CU_ASSERT_EQUAL(stored, 2);
    CU_ASSERT_EQUAL(st[0], ROW_STORED);
    CU_ASSERT_EQUAL(st[1], ROW_CONFLICT);
    CU_ASSERT_EQUAL(st[2], ROW_MISSING);
    CU_ASSERT_EQUAL(st[3], ROW_STORED);
}

/* Runs for the archived marker: stored and conflicting rows count (their
 * key is in MySQL), missing ones do not; per room, consecutive seqs merge. */
static void test_archived_marks(void)
{
    pl_arch_row_t rows[7] = {mkrow("b", 7, "x"), mkrow("a", 2, "x"), mkrow("a", 1, "x"),
                             mkrow("a", 3, "x"), mkrow("a", 5, "x"), mkrow("b", 8, "x"),
                             mkrow("a", 6, "x")};
    uint8_t st[7] = {ROW_STORED, ROW_STORED,  ROW_STORED, ROW_CONFLICT,
                     ROW_STORED, ROW_MISSING, ROW_STORED};
    pl_arch_mark_t m[7];
    size_t n = pl_arch_marks(rows, st, 7, m);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT(m[0].room.n == 1 && m[0].room.p[0] == 'a' && m[0].lo == 1 && m[0].hi == 3);
    CU_ASSERT(m[1].room.n == 1 && m[1].room.p[0] == 'a' && m[1].lo == 5 && m[1].hi == 6);
    CU_ASSERT(m[2].room.n == 1 && m[2].room.p[0] == 'b' && m[2].lo == 7 && m[2].hi == 7);
    CU_ASSERT_EQUAL(pl_arch_marks(rows, st, 0, m), 0);
}

/* ---- migrations ---- */

static void test_migration_names(void)
{
    unsigned v;
    CU_ASSERT_EQUAL(pl_migration_version("001_messages.sql", &v), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(pl_migration_version("12_x.sql", &v), 0);
    CU_ASSERT_EQUAL(v, 12);
    CU_ASSERT_EQUAL(pl_migration_version("messages.sql", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001messages.sql", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001_messages.sql~", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001_a.txt", &v), -1);
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("SELECT 1;\n", f);
    fclose(f);
}

static void test_migrate_scan(void)
{
    char dir[] = "/tmp/pl-test-migrations-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    touch(dir, "010_later.sql");
    touch(dir, "002_second.sql");
    touch(dir, "001_first.sql");
    touch(dir, "README");
    pl_migration_t *m;
    size_t n;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(pl_migrate_scan(dir, &m, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(m[0].version, 1);
    CU_ASSERT_EQUAL(m[1].version, 2);
    CU_ASSERT_EQUAL(m[2].version, 10);
    CU_ASSERT_STRING_EQUAL(m[2].name, "010_later.sql");
    pl_migrate_free(m, n);
    touch(dir, "02_dup.sql");
    CU_ASSERT_EQUAL(pl_migrate_scan(dir, &m, &n, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "same version"));
    CU_ASSERT_EQUAL(pl_migrate_scan("/nonexistent/dir", &m, &n, err, sizeof(err)), -1);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    CU_ASSERT_STRING_EQUAL(pl_migrate_default_dir("/x"), "/x");
}

/* ---- options and metrics ---- */

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

static void test_metrics_render(void)
{
    pl_arch_metrics_t m;
    memset(&m, 0, sizeof(m));
    atomic_store(&m.rows_written, 5000);
    atomic_store(&m.conflicts, 1);
    atomic_store(&m.stream_lag, -1);
    atomic_store(&m.errors[ERRK_MALFORMED], 3);
    atomic_store(&m.batches, 2);
    atomic_store(&m.batch_buckets[1], 1);
    atomic_store(&m.batch_buckets[3], 1);
    char *t = pl_arch_metrics_render(&m);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_rows_written_total 5000\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_conflicts_total 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_stream_lag NaN\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_errors_total{kind=\"malformed\"} 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.005\"} 0\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.01\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.05\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"+Inf\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_count 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE parley_archiver_stream_pending gauge\n"));
    free(t);
}

PL_UNIT_SUITE(archiver, PL_TEST(test_mysql_url_tcp), PL_TEST(test_mysql_url_socket),
              PL_TEST(test_mysql_url_errors), PL_TEST(test_stream_ids), PL_TEST(test_row_parse_ok),
              PL_TEST(test_row_parse_bad), PL_TEST(test_format_ts),
              PL_TEST(test_build_insert_escapes), PL_TEST(test_build_insert_splits),
              PL_TEST(test_classify), PL_TEST(test_archived_marks), PL_TEST(test_migration_names),
              PL_TEST(test_migrate_scan), PL_TEST(test_options), PL_TEST(test_metrics_render))
