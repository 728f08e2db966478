/*
 * archiver/writer.c, the pure parts: stream entry -> row validation,
 * timestamps, INSERT building and escaping (on an unconnected MYSQL
 * handle) and duplicate/conflict classification.
 */
#include "../../archiver/writer.h"
#include "buf.h"
#include "unit.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

PL_UNIT_SUITE(archiver_writer, PL_TEST(test_row_parse_ok), PL_TEST(test_row_parse_bad),
              PL_TEST(test_format_ts), PL_TEST(test_build_insert_escapes),
              PL_TEST(test_build_insert_splits), PL_TEST(test_classify))
