/*
 * common/parse.c: strict integers (whole input, no spaces, no overflow)
 * and the config value parsers built on them.
 */
#include "parse.h"
#include "unit.h"

#include <string.h>

#define U64(lit, out) pl_parse_u64((lit), strlen(lit), (out))
#define I64(lit, out) pl_parse_i64((lit), strlen(lit), (out))

static void test_u64(void)
{
    uint64_t v = 7;
    CU_ASSERT_EQUAL(U64("0", &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(U64("6379", &v), 0);
    CU_ASSERT_EQUAL(v, 6379);
    CU_ASSERT_EQUAL(U64("007", &v), 0);
    CU_ASSERT_EQUAL(v, 7);
    CU_ASSERT_EQUAL(U64("18446744073709551615", &v), 0);
    CU_ASSERT_EQUAL(v, UINT64_MAX);
    v = 42;
    CU_ASSERT_EQUAL(U64("18446744073709551616", &v), -1); /* 2^64 */
    CU_ASSERT_EQUAL(U64("99999999999999999999", &v), -1);
    CU_ASSERT_EQUAL(U64("000000000000000000001", &v), -1); /* 21 digits */
    CU_ASSERT_EQUAL(U64("", &v), -1);
    CU_ASSERT_EQUAL(U64("-1", &v), -1);
    CU_ASSERT_EQUAL(U64("+1", &v), -1);
    CU_ASSERT_EQUAL(U64(" 1", &v), -1);
    CU_ASSERT_EQUAL(U64("1 ", &v), -1);
    CU_ASSERT_EQUAL(U64("12a", &v), -1);
    CU_ASSERT_EQUAL(U64("0x10", &v), -1);
    CU_ASSERT_EQUAL(v, 42); /* untouched on error */
    /* only the n bytes given count: no NUL needed, nothing read past n */
    CU_ASSERT_EQUAL(pl_parse_u64("123-456", 3, &v), 0);
    CU_ASSERT_EQUAL(v, 123);
    CU_ASSERT_EQUAL(pl_parse_u64("123", 0, &v), -1);
}

static void test_i64(void)
{
    int64_t v = 7;
    CU_ASSERT_EQUAL(I64("-5", &v), 0);
    CU_ASSERT_EQUAL(v, -5);
    CU_ASSERT_EQUAL(I64("+5", &v), 0);
    CU_ASSERT_EQUAL(v, 5);
    CU_ASSERT_EQUAL(I64("9223372036854775807", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_MAX);
    CU_ASSERT_EQUAL(I64("-9223372036854775808", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_MIN);
    v = 1;
    CU_ASSERT_EQUAL(I64("9223372036854775808", &v), -1);
    CU_ASSERT_EQUAL(I64("-9223372036854775809", &v), -1);
    CU_ASSERT_EQUAL(I64("-", &v), -1);
    CU_ASSERT_EQUAL(I64("", &v), -1);
    CU_ASSERT_EQUAL(I64("--1", &v), -1);
    CU_ASSERT_EQUAL(I64(" 1", &v), -1);
    CU_ASSERT_EQUAL(I64("1.5", &v), -1);
    CU_ASSERT_EQUAL(v, 1);
}

static void test_config_values(void)
{
    int64_t v;
    int b;
    CU_ASSERT_EQUAL(pl_parse_duration_ms("10", &v), 0);
    CU_ASSERT_EQUAL(v, 10000);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("250ms", &v), 0);
    CU_ASSERT_EQUAL(v, 250);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("2M", &v), 0);
    CU_ASSERT_EQUAL(v, 120000);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("-1s", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("s", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("5 s", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("5w", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_duration_ms("9223372036854775807d", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_size("4k", &v), 0);
    CU_ASSERT_EQUAL(v, 4096);
    CU_ASSERT_EQUAL(pl_parse_size("3MiB", &v), 0);
    CU_ASSERT_EQUAL(v, 3 << 20);
    CU_ASSERT_EQUAL(pl_parse_size("65536", &v), 0);
    CU_ASSERT_EQUAL(v, 65536);
    CU_ASSERT_EQUAL(pl_parse_size("99999999999999999999", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_size("+4k", &v), -1);
    CU_ASSERT_EQUAL(pl_parse_bool("yes", &b), 0);
    CU_ASSERT_EQUAL(b, 1);
    CU_ASSERT_EQUAL(pl_parse_bool("OFF", &b), 0);
    CU_ASSERT_EQUAL(b, 0);
    CU_ASSERT_EQUAL(pl_parse_bool("maybe", &b), -1);
}

PL_UNIT_SUITE(parse, PL_TEST(test_u64), PL_TEST(test_i64), PL_TEST(test_config_values))
