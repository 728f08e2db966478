/*
 * archiver/marks.c: the runs a committed batch adds to each room's
 * archived marker, and the EVAL that raises them: its keys (built by
 * keys.c, for rooms of up to 512 bytes), its numbers, and the split into
 * calls of at most PL_ARCH_MARK_ROOMS_PER_CALL whole rooms.
 */
#include "../../archiver/marks.h"
#include "keys.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static pl_arch_row_t mkrow(const char *room, uint64_t seq, const char *msg_id)
{
    pl_arch_row_t r = {0};
    r.room = (pl_arch_bytes_t){room, strlen(room)};
    r.seq = seq;
    r.msg_id = (pl_arch_bytes_t){msg_id, strlen(msg_id)};
    return r;
}

/* Runs for the archived marker: stored rows count; conflicting ones do not
 * (the marker must never pass a message only Redis holds), nor missing
 * ones; per room, consecutive seqs merge. */
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
    CU_ASSERT(m[0].room.n == 1 && m[0].room.p[0] == 'a' && m[0].lo == 1 && m[0].hi == 2);
    CU_ASSERT(m[1].room.n == 1 && m[1].room.p[0] == 'a' && m[1].lo == 5 && m[1].hi == 6);
    CU_ASSERT(m[2].room.n == 1 && m[2].room.p[0] == 'b' && m[2].lo == 7 && m[2].hi == 7);
    CU_ASSERT_EQUAL(pl_arch_marks(rows, st, 0, m), 0);
}

static int arg_is(const pl_arch_mark_cmd_t *c, size_t i, const char *want)
{
    return i < c->argc && c->lens[i] == strlen(want) && memcmp(c->argv[i], want, c->lens[i]) == 0;
}

#define MARK(room, lo, hi) ((pl_arch_mark_t){{room, sizeof(room) - 1}, lo, hi})

static void test_mark_cmd_args(void)
{
    pl_arch_mark_t m[3] = {MARK("a", 1, 3), MARK("a", 5, 6), MARK("b", 7, 7)};
    pl_arch_mark_cmd_t c;
    CU_ASSERT_EQUAL_FATAL(pl_arch_mark_cmd(&c, m, 3), 3);
    static const char *want[] = {"EVAL",
                                 NULL, /* the script */
                                 "4",
                                 "parley:{a}:archived",
                                 "parley:{a}:archived:runs",
                                 "parley:{b}:archived",
                                 "parley:{b}:archived:runs",
                                 "2",
                                 "1",
                                 "3",
                                 "5",
                                 "6",
                                 "1",
                                 "7",
                                 "7"};
    CU_ASSERT_EQUAL_FATAL(c.argc, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < c.argc; i++) {
        if (want[i] == NULL)
            continue;
        if (!arg_is(&c, i, want[i]))
            fprintf(stderr, "arg %zu: '%.*s' != '%s'\n", i, (int)c.lens[i], c.argv[i], want[i]);
        CU_ASSERT(arg_is(&c, i, want[i]));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(c.argv[1], "redis.call('ZADD', rk"));
    CU_ASSERT_EQUAL(c.lens[1], strlen(c.argv[1]));
    pl_arch_mark_cmd_free(&c);
    CU_ASSERT_PTR_NULL(c.argv);
}

/* A call takes at most PL_ARCH_MARK_ROOMS_PER_CALL rooms and never splits
 * one room's runs across two calls. */
static void test_mark_cmd_splits_by_whole_rooms(void)
{
    enum { ROOMS = 2 * PL_ARCH_MARK_ROOMS_PER_CALL + 50 };
    static char names[ROOMS + 1][8];
    static pl_arch_mark_t m[ROOMS + 2];
    size_t n = 0;
    for (int r = 0; r <= ROOMS; r++) {
        snprintf(names[r], sizeof(names[r]), "r%04d", r);
        m[n++] = (pl_arch_mark_t){{names[r], 5}, 1, 1};
        if (r == PL_ARCH_MARK_ROOMS_PER_CALL - 1) /* the last room of the first call: two runs */
            m[n++] = (pl_arch_mark_t){{names[r], 5}, 3, 4};
    }
    size_t calls = 0, covered = 0;
    char nkeys[24];
    while (covered < n) {
        pl_arch_mark_cmd_t c;
        size_t k = pl_arch_mark_cmd(&c, m + covered, n - covered);
        CU_ASSERT_FATAL(k >= 1);
        size_t rooms = (c.argc - 3 - 2 * k) / 3; /* keys 2 + count 1 per room */
        CU_ASSERT(rooms <= PL_ARCH_MARK_ROOMS_PER_CALL);
        snprintf(nkeys, sizeof(nkeys), "%zu", 2 * rooms);
        CU_ASSERT(arg_is(&c, 2, nkeys));
        if (calls == 0)
            CU_ASSERT_EQUAL(k, PL_ARCH_MARK_ROOMS_PER_CALL + 1); /* both runs of room 99 */
        /* the next call starts with a new room */
        if (covered + k < n)
            CU_ASSERT(memcmp(m[covered + k - 1].room.p, m[covered + k].room.p, 5) != 0);
        pl_arch_mark_cmd_free(&c);
        covered += k;
        calls++;
    }
    CU_ASSERT_EQUAL(covered, n);
    CU_ASSERT_EQUAL(calls, 3);
}

/* Rooms come from stream entries: up to 128 characters of up to 4 bytes;
 * the keys (keys.c's builders) carry all of them. */
static void test_marker_keys_carry_the_longest_room(void)
{
    char room[4 * PL_ARCH_ROOM_MAX_CHARS];
    for (int i = 0; i < PL_ARCH_ROOM_MAX_CHARS; i++)
        memcpy(room + 4 * i, "\xf0\x9f\x98\x80", 4);
    pl_arch_mark_t m = {{room, sizeof(room)}, 9, 9};
    pl_arch_mark_cmd_t c;
    CU_ASSERT_EQUAL_FATAL(pl_arch_mark_cmd(&c, &m, 1), 1);
    CU_ASSERT_EQUAL_FATAL(c.lens[3], 8 + sizeof(room) + 10);
    CU_ASSERT(memcmp(c.argv[3], "parley:{", 8) == 0);
    CU_ASSERT(memcmp(c.argv[3] + 8, room, sizeof(room)) == 0);
    CU_ASSERT(memcmp(c.argv[3] + 8 + sizeof(room), "}:archived", 10) == 0);
    CU_ASSERT_EQUAL(c.lens[4], 8 + sizeof(room) + 15);
    CU_ASSERT(memcmp(c.argv[4] + 8 + sizeof(room), "}:archived:runs", 15) == 0);
    pl_arch_mark_cmd_free(&c);

    /* the same key the gateway builds for the room */
    pl_arch_mark_t lobby = {{"lobby", 5}, 1, 1};
    char key[PL_KEY_MAX];
    pl_key_archived(key, "lobby");
    CU_ASSERT_EQUAL_FATAL(pl_arch_mark_cmd(&c, &lobby, 1), 1);
    CU_ASSERT(arg_is(&c, 3, key));
    pl_arch_mark_cmd_free(&c);
}

PL_UNIT_SUITE(archiver_marks, PL_TEST(test_archived_marks), PL_TEST(test_mark_cmd_args),
              PL_TEST(test_mark_cmd_splits_by_whole_rooms),
              PL_TEST(test_marker_keys_carry_the_longest_room))
