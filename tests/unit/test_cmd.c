/*
 * cmd.c: command parsing (pl_cmd_parse), every op and every refusal. Room
 * names and permissions are in test_auth.c, history pages in
 * test_history.c.
 */
#include "cmd.h"
#include "unit.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, pl_cmd_t *c)
{
    return pl_cmd_parse(s, strlen(s), 4096, c);
}

static void expect_error(const char *s, const char *code)
{
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse(s, &c), -1);
    CU_ASSERT_PTR_NOT_NULL(c.err);
    if (c.err)
        CU_ASSERT_STRING_EQUAL(c.err, code);
    pl_cmd_free(&c);
}

static void test_valid(void)
{
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse("{\"op\":\"auth\",\"id\":1,\"token\":\"x.y.z\"}", &c), 0);
    CU_ASSERT_EQUAL(c.op, OP_AUTH);
    CU_ASSERT_TRUE(c.has_id);
    CU_ASSERT_EQUAL(c.id, 1);
    CU_ASSERT_STRING_EQUAL(c.token, "x.y.z");
    pl_cmd_free(&c);

    CU_ASSERT_EQUAL(parse("{\"op\":\"join\",\"room\":\"a:b.c-d_e\",\"since\":7}", &c), 0);
    CU_ASSERT_FALSE(c.has_id);
    CU_ASSERT_TRUE(c.has_since);
    CU_ASSERT_EQUAL(c.since, 7);
    pl_cmd_free(&c);

    CU_ASSERT_EQUAL(
        parse("{\"op\":\"send\",\"id\":2,\"room\":\"r\",\"text\":\"h\\u00e9\",\"cid\":\"c1\"}", &c),
        0);
    CU_ASSERT_EQUAL(c.op, OP_SEND);
    CU_ASSERT_EQUAL(c.text_len, 3);
    CU_ASSERT_STRING_EQUAL(c.cid, "c1");
    pl_cmd_free(&c);

    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"room\":\"r\"}", &c), 0);
    CU_ASSERT_EQUAL(c.limit, PL_HISTORY_DEFAULT);
    CU_ASSERT_EQUAL(c.before, 0);
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"room\":\"r\",\"before\":10,\"limit\":100}", &c),
                    0);
    CU_ASSERT_EQUAL(c.limit, 100);
    CU_ASSERT_EQUAL(c.before, 10);
    pl_cmd_free(&c);

    CU_ASSERT_EQUAL(parse("{\"op\":\"dm\",\"to\":\"bob\",\"text\":\"x\"}", &c), 0);
    CU_ASSERT_STRING_EQUAL(c.to, "bob");
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"typing\",\"room\":\"r\"}", &c), 0);
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"presence\",\"room\":\"r\"}", &c), 0);
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"leave\",\"room\":\"r\"}", &c), 0);
    pl_cmd_free(&c);
    /* refresh: a token like auth, nothing else read */
    CU_ASSERT_EQUAL(parse("{\"op\":\"refresh\",\"id\":3,\"token\":\"a.b.c\",\"room\":\"r\"}", &c),
                    0);
    CU_ASSERT_EQUAL(c.op, OP_REFRESH);
    CU_ASSERT_EQUAL(c.id, 3);
    CU_ASSERT_STRING_EQUAL(c.token, "a.b.c");
    CU_ASSERT_PTR_NULL(c.room);
    pl_cmd_free(&c);
}

static void test_bad_request(void)
{
    expect_error("", "bad_request");
    expect_error("{", "bad_request");
    expect_error("[]", "bad_request");
    expect_error("\"op\"", "bad_request");
    expect_error("42", "bad_request");
    expect_error("{}", "bad_request");
    expect_error("{\"op\":\"fly\"}", "bad_request");
    expect_error("{\"op\":7}", "bad_request");
    expect_error("{\"op\":\"join\",\"id\":\"1\",\"room\":\"r\"}", "bad_request");
    expect_error("{\"op\":\"join\",\"id\":1.5,\"room\":\"r\"}", "bad_request");
    expect_error("{\"op\":\"join\"}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":5}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":\"\"}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":\"a b\"}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":\"r\",\"since\":-1}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":\"r\",\"since\":\"1\"}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\"}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\",\"text\":1}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\",\"text\":\"\"}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\",\"text\":\"x\",\"cid\":5}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\",\"text\":\"x\",\"cid\":\"\"}", "bad_request");
    expect_error("{\"op\":\"dm\",\"to\":\"a b\",\"text\":\"x\"}", "bad_request");
    expect_error("{\"op\":\"dm\",\"text\":\"x\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"limit\":0}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"limit\":201}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"before\":0}", "bad_request");
    expect_error("{\"op\":\"auth\",\"token\":5}", "bad_request");
    expect_error("{\"op\":\"refresh\"}", "bad_request");
    expect_error("{\"op\":\"refresh\",\"token\":null}", "bad_request");
    expect_error("{\"op\":\"refresh\",\"token\":\"a\\u0000b\"}", "bad_request");
    expect_error("{\"op\":\"Refresh\",\"token\":\"a.b.c\"}", "bad_request");
    expect_error("{\"op\":\"join\",\"room\":\"r\",\"room\":\"s\"}", "bad_request");
    /* a 129-byte room */
    char big[300];
    strcpy(big, "{\"op\":\"join\",\"room\":\"");
    size_t n = strlen(big);
    memset(big + n, 'r', 129);
    strcpy(big + n + 129, "\"}");
    expect_error(big, "bad_request");

    /* id readable even when the rest is wrong */
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse("{\"op\":\"fly\",\"id\":9}", &c), -1);
    CU_ASSERT_TRUE(c.has_id);
    CU_ASSERT_EQUAL(c.id, 9);
    pl_cmd_free(&c);
}

static void test_too_large(void)
{
    char buf[5000];
    strcpy(buf, "{\"op\":\"send\",\"room\":\"r\",\"text\":\"");
    size_t n = strlen(buf);
    memset(buf + n, 'x', 4097);
    strcpy(buf + n + 4097, "\"}");
    expect_error(buf, "too_large");
    strcpy(buf + n + 4096, "\"}");
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse(buf, &c), 0);
    pl_cmd_free(&c);
}

/* \u0000 in text is kept with its length; NUL in names and ids is refused. */
static void test_nul(void)
{
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse("{\"op\":\"send\",\"id\":1,\"room\":\"r\",\"text\":\"a\\u0000b\"}", &c),
                    0);
    CU_ASSERT_EQUAL(c.text_len, 3);
    CU_ASSERT(c.text && memcmp(c.text, "a\0b", 3) == 0);
    pl_cmd_free(&c);
    expect_error("{\"op\":\"send\",\"room\":\"r\\u0000x\",\"text\":\"a\"}", "bad_request");
    expect_error("{\"op\":\"send\\u0000x\",\"room\":\"r\",\"text\":\"a\"}", "bad_request");
    expect_error("{\"op\":\"auth\",\"token\":\"a\\u0000b\"}", "bad_request");
    expect_error("{\"op\":\"send\",\"room\":\"r\",\"text\":\"a\",\"cid\":\"c\\u0000\"}",
                 "bad_request");
}

/* history's forms (issue 9): after, around, from_ts/until_ts, sender,
 * the cross-room form (sender without room), cursor; limit up to 200. */
static void test_history_forms(void)
{
    pl_cmd_t c;
    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"room\":\"r\"}", &c), 0);
    CU_ASSERT_FALSE(c.has_after);
    CU_ASSERT_EQUAL(c.around, 0);
    CU_ASSERT_EQUAL(c.from_ts, -1);
    CU_ASSERT_EQUAL(c.until_ts, -1);
    CU_ASSERT_PTR_NULL(c.sender);
    CU_ASSERT_PTR_NULL(c.cursor);
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"room\":\"r\",\"after\":0,\"before\":9,"
                          "\"from_ts\":5,\"until_ts\":5,\"sender\":\"bob\",\"limit\":200}",
                          &c),
                    0);
    CU_ASSERT_TRUE(c.has_after);
    CU_ASSERT_EQUAL(c.after, 0);
    CU_ASSERT_EQUAL(c.before, 9);
    CU_ASSERT_EQUAL(c.from_ts, 5);
    CU_ASSERT_EQUAL(c.until_ts, 5);
    CU_ASSERT_STRING_EQUAL(c.sender, "bob");
    CU_ASSERT_EQUAL(c.limit, 200);
    pl_cmd_free(&c);
    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"room\":\"r\",\"around\":7,\"after\":null}", &c),
                    0);
    CU_ASSERT_EQUAL(c.around, 7);
    CU_ASSERT_FALSE(c.has_after);
    pl_cmd_free(&c);
    /* the cross-room form */
    CU_ASSERT_EQUAL(parse("{\"op\":\"history\",\"sender\":\"al\",\"cursor\":\"1.2.r\"}", &c), 0);
    CU_ASSERT_PTR_NULL(c.room);
    CU_ASSERT_STRING_EQUAL(c.sender, "al");
    CU_ASSERT_STRING_EQUAL(c.cursor, "1.2.r");
    pl_cmd_free(&c);

    expect_error("{\"op\":\"history\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":null}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"after\":-1}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"after\":1.5}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"around\":0}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"around\":3,\"before\":4}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"around\":3,\"after\":1}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"after\":3,\"before\":4}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"from_ts\":\"1\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"until_ts\":-5}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"until_ts\":253402300800000}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"after\":9007199254740993}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"around\":9223372036854775807}",
                 "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"from_ts\":6,\"until_ts\":5}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"sender\":\"a b\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"sender\":\"a\\u0000\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"cursor\":\"1.2.r\"}", "bad_request");
    expect_error("{\"op\":\"history\",\"sender\":\"al\",\"cursor\":5}", "bad_request");
    expect_error("{\"op\":\"history\",\"sender\":\"al\",\"before\":5}", "bad_request");
    expect_error("{\"op\":\"history\",\"sender\":\"al\",\"after\":0}", "bad_request");
    expect_error("{\"op\":\"history\",\"sender\":\"al\",\"around\":2}", "bad_request");
}

PL_UNIT_SUITE(cmd, PL_TEST(test_valid), PL_TEST(test_bad_request), PL_TEST(test_too_large),
              PL_TEST(test_nul), PL_TEST(test_history_forms))
