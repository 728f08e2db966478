/*
 * The pure parts of the chat protocol: command parsing (cmd.c), room
 * names, dm rooms and the rooms claim (auth.c), the history seam
 * (history.c).
 */
#include "auth.h"
#include "cmd.h"
#include "history.h"
#include "unit.h"

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
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"limit\":101}", "bad_request");
    expect_error("{\"op\":\"history\",\"room\":\"r\",\"before\":0}", "bad_request");
    expect_error("{\"op\":\"auth\",\"token\":5}", "bad_request");
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

static void test_rooms_and_claims(void)
{
    CU_ASSERT_TRUE(pl_room_name_valid("a"));
    CU_ASSERT_TRUE(pl_room_name_valid("team:eng.ops-1_x"));
    CU_ASSERT_FALSE(pl_room_name_valid(""));
    CU_ASSERT_FALSE(pl_room_name_valid("a/b"));
    CU_ASSERT_FALSE(pl_room_name_valid("a{b}"));

    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1], room[PL_ROOM_MAX + 1];
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:alice:bob", a, b), 1);
    CU_ASSERT_STRING_EQUAL(a, "alice");
    CU_ASSERT_STRING_EQUAL(b, "bob");
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:bob:alice", a, b), -1); /* not sorted */
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:alice:alice", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:alice", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:a:b:c", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("lobby", a, b), 0);
    CU_ASSERT_EQUAL(pl_room_dm_name("bob", "alice", room), 0);
    CU_ASSERT_STRING_EQUAL(room, "dm:alice:bob");
    CU_ASSERT_EQUAL(pl_room_dm_name("bob", "bob", room), -1);

    pl_auth_t au = {0};
    strcpy(au.user, "carol");
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "anything"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "dm:alice:bob"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "dm:alice:carol"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "dm:carol:alice"));
    char *claim[] = {"lobby", "team:*"};
    au.rooms = claim;
    au.nrooms = 2;
    au.has_rooms = 1;
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "lobby"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "lobby2"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "team:eng"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "teams"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "dm:alice:carol")); /* dm rooms ignore the claim */
    au.nrooms = 0;
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "lobby")); /* empty claim: no rooms */
}

static void test_history_seam(void)
{
    pl_hmsg_t v[3] = {{.seq = 5}, {.seq = 6}, {.seq = 7}};
    pl_history_page_t full = {v, 3, 1}, part = {v, 3, 0}, none = {NULL, 0, 0};
    int64_t ob;
    int ol;
    CU_ASSERT_EQUAL(pl_history_older_needed(&full, 0, 3, &ob, &ol), 0);
    CU_ASSERT_EQUAL(pl_history_older_needed(&part, 0, 3, &ob, &ol), 0); /* exactly a page */
    CU_ASSERT_EQUAL(pl_history_older_needed(&part, 0, 10, &ob, &ol), 1);
    CU_ASSERT_EQUAL(ob, 5);
    CU_ASSERT_EQUAL(ol, 7);
    CU_ASSERT_EQUAL(pl_history_older_needed(&none, 100, 10, &ob, &ol), 1);
    CU_ASSERT_EQUAL(ob, 100);
    CU_ASSERT_EQUAL(ol, 10);
    CU_ASSERT_EQUAL(pl_history_older_needed(&none, 1, 10, &ob, &ol), 0);
    pl_hmsg_t first[1] = {{.seq = 1}};
    pl_history_page_t from1 = {first, 1, 0};
    CU_ASSERT_EQUAL(pl_history_older_needed(&from1, 0, 10, &ob, &ol), 0);

    char key[PL_KEY_MAX];
    pl_key_room(key, "lobby", "seq");
    CU_ASSERT_STRING_EQUAL(key, "parley:{lobby}:seq");
    pl_key_user(key, "bob");
    CU_ASSERT_STRING_EQUAL(key, "parley:user:{bob}");
    pl_key_cid(key, "lobby", "bob", "c1");
    CU_ASSERT_STRING_EQUAL(key, "parley:{lobby}:cid:bob:c1");
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

/* The MySQL part of a page: events rebuilt exactly like the send script's,
 * and the no-hole check between the MySQL and the Redis part. */
static void test_history_mysql_part(void)
{
    size_t n = 0;
    char *j = pl_history_event_json("lobby", 5, 42, "0123", 4, "alice", 5, "q\"\\\n\0e", 6,
                                    1764100000123, &n);
    const char *want = "{\"ev\":\"msg\",\"room\":\"lobby\",\"seq\":42,\"msg_id\":\"0123\","
                       "\"from\":\"alice\",\"text\":\"q\\\"\\\\\\n\\u0000e\",\"ts\":1764100000123}";
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(j, want);
    CU_ASSERT_EQUAL(n, strlen(want));
    free(j);
    CU_ASSERT_PTR_NULL(pl_history_event_json("r", 1, 1, "m", 1, "a", 1, "\xff", 1, 1, &n));

    pl_hmsg_t a[2] = {{.seq = 3}, {.seq = 4}}, b[2] = {{.seq = 5}, {.seq = 6}};
    pl_hmsg_t c[1] = {{.seq = 6}};
    pl_history_page_t older = {a, 2, 0}, recent = {b, 2, 0}, gap = {c, 1, 0}, none = {NULL, 0, 0};
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &recent), 1);
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &gap), 0);
    CU_ASSERT_EQUAL(pl_history_contiguous(&none, &recent), 1);
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &none), 1);
}

/* Recent-zset members carry their origin as a prefix; old ones do not. */
static void test_member_origin(void)
{
    const char *json, *node;
    size_t jl, nl;
    int w;
    uint64_t c;
    const char m1[] = "o1:17:1:8:node-a.9{\"ev\":\"msg\"}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m1, strlen(m1), &json, &jl, &node, &nl, &w, &c), 1);
    CU_ASSERT(c == 17 && w == 1 && nl == 8 && memcmp(node, "node-a.9", 8) == 0);
    CU_ASSERT(jl == 12 && memcmp(json, "{\"ev\":\"msg\"}", 12) == 0);
    const char m2[] = "{\"ev\":\"msg\"}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m2, strlen(m2), &json, &jl, &node, &nl, &w, &c), 0);
    CU_ASSERT(json == m2 && jl == strlen(m2));
    const char m3[] = "o1:17:1:99:short{}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m3, strlen(m3), &json, &jl, &node, &nl, &w, &c), 0);
    CU_ASSERT(json == m3 && jl == strlen(m3));
    const char m4[] = "o1:x:1:1:n{}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m4, strlen(m4), &json, &jl, &node, &nl, &w, &c), 0);
}

PL_UNIT_SUITE(cmd_parse, PL_TEST(test_valid), PL_TEST(test_bad_request), PL_TEST(test_too_large),
              PL_TEST(test_rooms_and_claims), PL_TEST(test_history_seam), PL_TEST(test_nul),
              PL_TEST(test_history_mysql_part), PL_TEST(test_member_origin))
