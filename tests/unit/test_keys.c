/*
 * common/keys.c: every builder gives the documented key (keys.h), the
 * archiver's (ptr,len) builders match the gateway's, and the channel
 * parsers take exactly the channels the builders make.
 */
#include "keys.h"
#include "unit.h"

#include <string.h>

static void test_room_keys(void)
{
    char k[PL_KEY_MAX];
    pl_key_room(k, "lobby", "seq");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:seq");
    pl_key_seq(k, "lobby");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:seq");
    pl_key_recent(k, "lobby");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:recent");
    pl_key_archived(k, "lobby");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:archived");
    pl_key_presence(k, "dm:alice:bob");
    CU_ASSERT_STRING_EQUAL(k, "parley:{dm:alice:bob}:presence");
    pl_key_presence_users(k, "dm:alice:bob");
    CU_ASSERT_STRING_EQUAL(k, "parley:{dm:alice:bob}:presence:users");
    pl_key_user_conns(k, "alice");
    CU_ASSERT_STRING_EQUAL(k, "parley:user:{alice}:conns");
    pl_key_cid(k, "lobby", "bob", "c1");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:cid:bob:c1");
    pl_key_cid(k, "lobby", "bob", "");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:cid:bob:");
    pl_key_noseq(k, "lobby", "node1.4242", 3);
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:noseq:node1.4242.3");
    CU_ASSERT_STRING_EQUAL(PL_KEY_ARCHIVE, "parley:archive");
}

static void test_archiver_keys(void)
{
    char k[PL_KEY_MAX], g[PL_KEY_MAX];
    /* a room as bytes from the stream: only room_len of them count */
    const char room[] = "lobbyXYZ";
    pl_key_archived_n(k, sizeof(k), room, 5);
    pl_key_archived(g, "lobby");
    CU_ASSERT_STRING_EQUAL(k, g);
    pl_key_archived_runs_n(k, sizeof(k), room, 5);
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:archived:runs");
    /* the size given is kept: cut, NUL-terminated, nothing past it */
    char small[12];
    memset(small, 'x', sizeof(small));
    pl_key_archived_n(small, 10, room, 5);
    CU_ASSERT_STRING_EQUAL(small, "parley:{l");
    CU_ASSERT_EQUAL(small[10], 'x');
    /* a NUL inside the bytes ends the room, as %.*s does */
    pl_key_archived_n(k, sizeof(k), "ab\0cd", 5);
    CU_ASSERT_STRING_EQUAL(k, "parley:{ab}:archived");
}

static void test_channels(void)
{
    char k[PL_KEY_MAX];
    pl_key_room_channel(k, "lobby");
    CU_ASSERT_STRING_EQUAL(k, "parley:{lobby}:ch");
    pl_key_user(k, "bob");
    CU_ASSERT_STRING_EQUAL(k, "parley:user:{bob}");
    pl_key_node(k, "host-a", 2);
    CU_ASSERT_STRING_EQUAL(k, "parley:node:{host-a}:2");
}

/* Each builder's channel parses back to its name. */
static void test_parse_round_trip(void)
{
    char k[PL_KEY_MAX], room[PL_ROOM_MAX + 1], user[PL_USER_MAX + 1];
    pl_key_room_channel(k, "dm:alice:bob");
    CU_ASSERT_EQUAL(pl_key_parse_room_channel(k, strlen(k), room), 0);
    CU_ASSERT_STRING_EQUAL(room, "dm:alice:bob");
    pl_key_user(k, "alice");
    CU_ASSERT_EQUAL(pl_key_parse_user(k, strlen(k), user), 0);
    CU_ASSERT_STRING_EQUAL(user, "alice");

    /* the longest names fit */
    char big[PL_ROOM_MAX + 1];
    memset(big, 'r', PL_ROOM_MAX);
    big[PL_ROOM_MAX] = '\0';
    pl_key_room_channel(k, big);
    CU_ASSERT_EQUAL(pl_key_parse_room_channel(k, strlen(k), room), 0);
    CU_ASSERT_STRING_EQUAL(room, big);
    char bigu[PL_USER_MAX + 1];
    memset(bigu, 'u', PL_USER_MAX);
    bigu[PL_USER_MAX] = '\0';
    pl_key_user(k, bigu);
    CU_ASSERT_EQUAL(pl_key_parse_user(k, strlen(k), user), 0);
    CU_ASSERT_STRING_EQUAL(user, bigu);

    /* n counts, not a NUL: a channel followed by other bytes */
    const char buf[] = "parley:{lobby}:chGARBAGE";
    CU_ASSERT_EQUAL(pl_key_parse_room_channel(buf, 17, room), 0);
    CU_ASSERT_STRING_EQUAL(room, "lobby");
}

static void test_parse_rejects(void)
{
    char room[PL_ROOM_MAX + 1], user[PL_USER_MAX + 1];
    static const char *const not_room[] = {
        "",
        "parley:{}:ch",       /* empty name */
        "parley:{lobby}:seq", /* a key, not the channel */
        "parley:{lobby}:c",   /* short suffix */
        "parley:{lobby}",     /* no suffix */
        "parley:lobby}:ch",   /* no hash tag */
        "Parley:{lobby}:ch",  /* prefix is case-sensitive */
        "parley:user:{bob}",  /* a user channel */
        "parley:node:{n}:0",  /* the control channel */
        "parley:{",           /* shorter than prefix + suffix */
        "parley:{}:c",
    };
    for (size_t i = 0; i < sizeof(not_room) / sizeof(not_room[0]); i++) {
        CU_ASSERT_EQUAL(pl_key_parse_room_channel(not_room[i], strlen(not_room[i]), room), -1);
    }
    static const char *const not_user[] = {
        "",
        "parley:user:{}",      /* empty name */
        "parley:user:{bob",    /* no closing brace */
        "parley:user:bob}",    /* no opening brace */
        "parley:{bob}:ch",     /* a room channel */
        "parley:user:{bob}:x", /* trailing bytes */
        "parley:node:{n}:0",
    };
    for (size_t i = 0; i < sizeof(not_user) / sizeof(not_user[0]); i++) {
        CU_ASSERT_EQUAL(pl_key_parse_user(not_user[i], strlen(not_user[i]), user), -1);
    }

    /* one byte over the name limits */
    char k[PL_KEY_MAX], big[PL_ROOM_MAX + 2];
    memset(big, 'r', PL_ROOM_MAX + 1);
    big[PL_ROOM_MAX + 1] = '\0';
    pl_key_room_channel(k, big);
    CU_ASSERT_EQUAL(pl_key_parse_room_channel(k, strlen(k), room), -1);
    char bigu[PL_USER_MAX + 2];
    memset(bigu, 'u', PL_USER_MAX + 1);
    bigu[PL_USER_MAX + 1] = '\0';
    pl_key_user(k, bigu);
    CU_ASSERT_EQUAL(pl_key_parse_user(k, strlen(k), user), -1);
    /* a room channel cut short by n */
    const char ch[] = "parley:{lobby}:ch";
    CU_ASSERT_EQUAL(pl_key_parse_room_channel(ch, sizeof(ch) - 2, room), -1);
}

PL_UNIT_SUITE(keys, PL_TEST(test_room_keys), PL_TEST(test_archiver_keys), PL_TEST(test_channels),
              PL_TEST(test_parse_round_trip), PL_TEST(test_parse_rejects))
