/*
 * auth.c: room names, dm room names and their users, the rooms claim
 * (exact names and "prefix*"), pl_auth_check on good, forged, expired and
 * malformed tokens, and reading the secret from the config or its file.
 */
#include "auth.h"
#include "options.h"
#include "token.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET ((const uint8_t *)"auth-secret")
#define SECRET_LEN 11
#define NOW 1700000000LL

/* The everyday cases: room names, dm rooms and the rooms claim. */
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

/* Names at and past the limits: PL_ROOM_MAX bytes of any allowed char. */
static void test_room_name_limits(void)
{
    char name[PL_ROOM_MAX + 2];
    memset(name, 'r', PL_ROOM_MAX);
    name[PL_ROOM_MAX] = '\0';
    CU_ASSERT_TRUE(pl_room_name_valid(name));
    name[PL_ROOM_MAX] = 'r';
    name[PL_ROOM_MAX + 1] = '\0';
    CU_ASSERT_FALSE(pl_room_name_valid(name));
    CU_ASSERT_TRUE(pl_room_name_valid("AZaz09_.:-"));
    static const char *bad[] = {"a b", "a\tb", "a*", "a|b", "a{b", "a}b", "\xc3\xa9", "a\n", "#x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_FALSE(pl_room_name_valid(bad[i]));
}

/* dm:<a>:<b> names: users sorted bytewise, both valid ids, and the whole
 * name within PL_ROOM_MAX (two 64-byte users do not fit). */
static void test_dm_names(void)
{
    char a[PL_USER_MAX + 1], b[PL_USER_MAX + 1], room[PL_ROOM_MAX + 1];
    CU_ASSERT_EQUAL(pl_room_dm_name("alice", "bob", room), 0);
    CU_ASSERT_STRING_EQUAL(room, "dm:alice:bob");
    CU_ASSERT_EQUAL(pl_room_dm_name("B", "a", room), 0); /* bytewise: 'B' < 'a' */
    CU_ASSERT_STRING_EQUAL(room, "dm:B:a");
    CU_ASSERT_EQUAL(pl_room_dm_users(room, a, b), 1);
    CU_ASSERT_STRING_EQUAL(a, "B");
    CU_ASSERT_STRING_EQUAL(b, "a");

    char u1[PL_USER_MAX + 1], u2[PL_USER_MAX + 1];
    memset(u1, 'x', PL_USER_MAX);
    u1[PL_USER_MAX] = '\0';
    memset(u2, 'y', PL_USER_MAX);
    u2[PL_USER_MAX] = '\0';
    CU_ASSERT_EQUAL(pl_room_dm_name(u1, u2, room), -1); /* 3 + 64 + 1 + 64 > 128 */
    u2[PL_ROOM_MAX - 3 - PL_USER_MAX - 1] = '\0';       /* now exactly 128 */
    CU_ASSERT_EQUAL(pl_room_dm_name(u1, u2, room), 0);
    CU_ASSERT_EQUAL(strlen(room), PL_ROOM_MAX);
    CU_ASSERT_EQUAL(pl_room_dm_users(room, a, b), 1);
    CU_ASSERT_STRING_EQUAL(a, u1);
    CU_ASSERT_STRING_EQUAL(b, u2);

    CU_ASSERT_EQUAL(pl_room_dm_users("dm:", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dm::bob", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:alice:", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dm:al ice:bob", a, b), -1);
    CU_ASSERT_EQUAL(pl_room_dm_users("dmx:alice:bob", a, b), 0); /* not a dm room */
    CU_ASSERT_EQUAL(pl_room_dm_users("DM:alice:bob", a, b), 0);
    /* a 65-byte user is no user id */
    char longu[3 + PL_USER_MAX + 1 + 1 + 1 + 1];
    snprintf(longu, sizeof(longu), "dm:%sx:z", u1);
    CU_ASSERT_EQUAL(pl_room_dm_users(longu, a, b), -1);
}

/* "prefix*" matches the prefix itself and everything after it; '*'
 * elsewhere is literal; a lone "*" matches every room. */
static void test_claim_prefixes(void)
{
    pl_auth_t au = {0};
    strcpy(au.user, "dave");
    char *claim[] = {"a*b", "ops:*", "x"};
    au.rooms = claim;
    au.nrooms = 3;
    au.has_rooms = 1;
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "ops:"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "ops:db:east"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "ops"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "OPS:db"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "ab")); /* "a*b" is not a prefix rule */
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "axb"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "xx"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "x"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "dm:alice:bob"));  /* not dave's */
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "dm:dave:alice")); /* malformed: unsorted */
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "dm:alice:dave"));
    char *all[] = {"*"};
    au.rooms = all;
    au.nrooms = 1;
    CU_ASSERT_TRUE(pl_auth_room_allowed(&au, "anything"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&au, "dm:alice:bob"));
}

/* pl_auth_check with only a secret (no iss/aud rules: test_token.c has those) */
static int check(const char *token, const uint8_t *secret, size_t len, int64_t now, pl_auth_t *a,
                 const char **why)
{
    pl_token_rules_t rules = {.secret = secret, .secret_len = len};
    return pl_auth_check(token, &rules, now, a, why);
}

static char *sign(const char *claims)
{
    char *t = pl_token_sign(claims, SECRET, SECRET_LEN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

/* A good token fills user, name, exp and the rooms claim (copied: the
 * pl_auth_t owns them). */
static void test_check_good(void)
{
    char *t = sign("{\"sub\":\"alice\",\"exp\":1700003600,\"name\":\"Alice A.\","
                   "\"rooms\":[\"lobby\",\"team:*\"]}");
    pl_auth_t a;
    const char *why = NULL;
    CU_ASSERT_EQUAL_FATAL(check(t, SECRET, SECRET_LEN, NOW, &a, &why), 0);
    free(t);
    CU_ASSERT_STRING_EQUAL(a.user, "alice");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a.name);
    CU_ASSERT_STRING_EQUAL(a.name, "Alice A.");
    CU_ASSERT_EQUAL(a.exp, 1700003600);
    CU_ASSERT_TRUE(a.has_rooms);
    CU_ASSERT_EQUAL_FATAL(a.nrooms, 2);
    CU_ASSERT_STRING_EQUAL(a.rooms[0], "lobby");
    CU_ASSERT_STRING_EQUAL(a.rooms[1], "team:*");
    CU_ASSERT_TRUE(pl_auth_room_allowed(&a, "team:eng"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&a, "random"));
    pl_auth_free(&a);
    CU_ASSERT_PTR_NULL(a.rooms);
    CU_ASSERT_PTR_NULL(a.name);
    CU_ASSERT_EQUAL(a.nrooms, 0);

    /* no name, no rooms claim: every room; an empty claim: none */
    t = sign("{\"sub\":\"bob\",\"exp\":1700000001}");
    CU_ASSERT_EQUAL_FATAL(check(t, SECRET, SECRET_LEN, NOW, &a, &why), 0);
    free(t);
    CU_ASSERT_STRING_EQUAL(a.user, "bob");
    CU_ASSERT_PTR_NULL(a.name);
    CU_ASSERT_FALSE(a.has_rooms);
    CU_ASSERT_TRUE(pl_auth_room_allowed(&a, "random"));
    pl_auth_free(&a);
    t = sign("{\"sub\":\"bob\",\"exp\":1700000001,\"rooms\":[]}");
    CU_ASSERT_EQUAL_FATAL(check(t, SECRET, SECRET_LEN, NOW, &a, &why), 0);
    free(t);
    CU_ASSERT_TRUE(a.has_rooms);
    CU_ASSERT_EQUAL(a.nrooms, 0);
    CU_ASSERT_FALSE(pl_auth_room_allowed(&a, "random"));
    CU_ASSERT_FALSE(pl_auth_room_allowed(&a, "bob:x"));
    CU_ASSERT_TRUE(pl_auth_room_allowed(&a, "dm:alice:bob"));
    pl_auth_free(&a);
}

static void expect_refused(const char *token, const uint8_t *secret, size_t len, int64_t now)
{
    pl_auth_t a;
    const char *why = NULL;
    CU_ASSERT_EQUAL(check(token, secret, len, now, &a, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(why);
    if (why)
        CU_ASSERT(why[0] != '\0');
    /* nothing to free, and no user on a refused token */
    CU_ASSERT_EQUAL(a.user[0], '\0');
    CU_ASSERT_PTR_NULL(a.rooms);
    CU_ASSERT_PTR_NULL(a.name);
}

/* Forged (other secret, edited payload), expired (exp == now included),
 * no exp, alg none, garbage: all refused with a reason. */
static void test_check_refused(void)
{
    char *t = sign("{\"sub\":\"alice\",\"exp\":1700003600}");
    expect_refused(t, (const uint8_t *)"other-secret", 12, NOW);
    expect_refused(t, SECRET, SECRET_LEN - 1, NOW); /* a prefix of the secret */
    expect_refused(t, SECRET, SECRET_LEN, 1700003600);
    expect_refused(t, SECRET, SECRET_LEN, 1700003601);
    /* the payload swapped for another user's, the signature kept */
    char *other = sign("{\"sub\":\"mallory\",\"exp\":1700003600}");
    char *p1 = strchr(t, '.'), *s1 = strrchr(t, '.');
    char *p2 = strchr(other, '.'), *s2 = strrchr(other, '.');
    char forged[1024];
    snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(p1 - t), t, (int)(s2 - p2), p2, s1);
    expect_refused(forged, SECRET, SECRET_LEN, NOW);
    free(other);
    free(t);

    t = sign("{\"sub\":\"alice\"}");
    expect_refused(t, SECRET, SECRET_LEN, NOW);
    free(t);
    t = sign("{\"sub\":\"al:ice\",\"exp\":1700003600}");
    expect_refused(t, SECRET, SECRET_LEN, NOW);
    free(t);
    expect_refused("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                   "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.",
                   SECRET, SECRET_LEN, NOW);
    expect_refused("", SECRET, SECRET_LEN, NOW);
    expect_refused("x.y.z", SECRET, SECRET_LEN, NOW);
}

static char *write_secret(const char *text, size_t n)
{
    static char path[64];
    strcpy(path, "/tmp/pl-test-secret-XXXXXX");
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, n) == (ssize_t)n);
    close(fd);
    return path;
}

static int load(const char *value, const char *file, uint8_t **s, size_t *n)
{
    pl_gw_config_t cfg = {0};
    cfg.token_secret = (char *)value;
    cfg.token_secret_file = (char *)file;
    *s = NULL;
    *n = 0;
    return pl_auth_load_secret(&cfg, s, n);
}

/* token_secret wins; the file loses one trailing newline (or CRLF), keeps
 * any other bytes; an empty or missing source is an error. */
static void test_load_secret(void)
{
    uint8_t *s;
    size_t n;
    CU_ASSERT_EQUAL_FATAL(load("inline", "/nonexistent", &s, &n), 0);
    CU_ASSERT(n == 6 && memcmp(s, "inline", 6) == 0);
    free(s);

    char *path = write_secret("from file\n", 10);
    CU_ASSERT_EQUAL_FATAL(load("", path, &s, &n), 0);
    CU_ASSERT(n == 9 && memcmp(s, "from file", 9) == 0);
    CU_ASSERT_EQUAL(s[n], '\0');
    free(s);
    CU_ASSERT_EQUAL_FATAL(load(NULL, path, &s, &n), 0);
    free(s);
    unlink(path);

    path = write_secret("crlf\r\n", 6);
    CU_ASSERT_EQUAL_FATAL(load("", path, &s, &n), 0);
    CU_ASSERT(n == 4 && memcmp(s, "crlf", 4) == 0);
    free(s);
    unlink(path);

    path = write_secret("two\n\n", 5); /* only one newline is stripped */
    CU_ASSERT_EQUAL_FATAL(load("", path, &s, &n), 0);
    CU_ASSERT(n == 4 && memcmp(s, "two\n", 4) == 0);
    free(s);
    unlink(path);

    path = write_secret("a\0b", 3); /* binary secrets keep their length */
    CU_ASSERT_EQUAL_FATAL(load("", path, &s, &n), 0);
    CU_ASSERT(n == 3 && memcmp(s, "a\0b", 3) == 0);
    free(s);
    unlink(path);

    path = write_secret("\n", 1);
    CU_ASSERT_EQUAL(load("", path, &s, &n), -1);
    unlink(path);
    CU_ASSERT_EQUAL(load("", path, &s, &n), -1); /* gone */
    CU_ASSERT_EQUAL(load("", "", &s, &n), -1);
    CU_ASSERT_EQUAL(load(NULL, NULL, &s, &n), -1);
    CU_ASSERT_PTR_NULL(s);

    /* a loaded secret verifies what it signed */
    path = write_secret("auth-secret\n", 12);
    CU_ASSERT_EQUAL_FATAL(load("", path, &s, &n), 0);
    unlink(path);
    char *t = sign("{\"sub\":\"carol\",\"exp\":1700003600}");
    pl_auth_t a;
    const char *why;
    CU_ASSERT_EQUAL(check(t, s, n, NOW, &a, &why), 0);
    pl_auth_free(&a);
    free(t);
    free(s);
}

PL_UNIT_SUITE(auth, PL_TEST(test_rooms_and_claims), PL_TEST(test_room_name_limits),
              PL_TEST(test_dm_names), PL_TEST(test_claim_prefixes), PL_TEST(test_check_good),
              PL_TEST(test_check_refused), PL_TEST(test_load_secret))
