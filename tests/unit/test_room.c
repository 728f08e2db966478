/*
 * room.c: the index both ways (room -> members, conn -> members), user
 * counts for presence, user -> conns for DMs, and the message queues (the
 * map it is built on is common/map.c, see test_map.c).
 */
#include "frame.h"
#include "room.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static void test_join_leave_both_ways(void)
{
    pl_rooms_t rs;
    pl_rooms_init(&rs);
    int c1, c2, c3; /* stand-ins for connections */
    pl_conn_rooms_t l1 = {0}, l2 = {0}, l3 = {0};
    int first_conn, first_user, last_user, empty;

    pl_member_t *m1 = pl_room_join(&rs, "r", &c1, 1, "alice", &l1, &first_conn, &first_user);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m1);
    CU_ASSERT_TRUE(first_conn);
    CU_ASSERT_TRUE(first_user);
    /* the same connection again: refused */
    CU_ASSERT_PTR_NULL(pl_room_join(&rs, "r", &c1, 1, "alice", &l1, &first_conn, &first_user));
    /* alice's second device */
    pl_member_t *m2 = pl_room_join(&rs, "r", &c2, 2, "alice", &l2, &first_conn, &first_user);
    CU_ASSERT_FALSE(first_conn);
    CU_ASSERT_FALSE(first_user);
    pl_member_t *m3 = pl_room_join(&rs, "r", &c3, 3, "bob", &l3, &first_conn, &first_user);
    CU_ASSERT_TRUE(first_user);
    pl_member_t *m1b = pl_room_join(&rs, "s", &c1, 1, "alice", &l1, &first_conn, &first_user);
    CU_ASSERT_TRUE(first_conn);
    CU_ASSERT_EQUAL(l1.n, 2);

    pl_room_t *r = pl_room_get(&rs, "r");
    CU_ASSERT_EQUAL(r->nmembers, 3);
    CU_ASSERT_EQUAL(r->nusers, 2);
    CU_ASSERT_EQUAL(pl_room_user_conns(r, "alice"), 2);
    CU_ASSERT_PTR_EQUAL(pl_room_member(&l1, "r"), m1);
    CU_ASSERT_PTR_EQUAL(pl_room_member(&l1, "s"), m1b);
    CU_ASSERT_PTR_NULL(pl_room_member(&l3, "s"));

    pl_room_leave(m1, &l1, &last_user, &empty);
    CU_ASSERT_FALSE(last_user); /* alice still has c2 in r */
    CU_ASSERT_FALSE(empty);
    CU_ASSERT_PTR_NULL(pl_room_member(&l1, "r"));
    CU_ASSERT_PTR_EQUAL(pl_room_member(&l1, "s"), m1b);
    pl_room_leave(m2, &l2, &last_user, &empty);
    CU_ASSERT_TRUE(last_user);
    CU_ASSERT_FALSE(empty);
    CU_ASSERT_EQUAL(pl_room_user_conns(r, "alice"), 0);
    pl_room_leave(m3, &l3, &last_user, &empty);
    CU_ASSERT_TRUE(empty);
    CU_ASSERT_PTR_NULL(r->members);
    pl_room_drop(&rs, r);
    CU_ASSERT_PTR_NULL(pl_room_get(&rs, "r"));
    pl_room_leave(m1b, &l1, &last_user, &empty);
    CU_ASSERT_PTR_NULL(l1.head);
    CU_ASSERT_EQUAL(l1.n, 0);
    CU_ASSERT_PTR_NULL(l1.by_name); /* freed with the last room */
    pl_room_drop(&rs, pl_room_get(&rs, "s"));
    pl_rooms_free(&rs);
}

static void test_many_members(void)
{
    pl_rooms_t rs;
    pl_rooms_init(&rs);
    enum { N = 500 };
    static int conns[N];
    static pl_conn_rooms_t lists[N];
    static pl_member_t *ms[N];
    int fc, fu, lu, em;
    static char users[N][16]; /* members borrow the user string (the session owns it) */
    for (int i = 0; i < N; i++) {
        snprintf(users[i], sizeof(users[i]), "u%d", i % 50);
        ms[i] = pl_room_join(&rs, "big", &conns[i], (uint64_t)i + 1, i % 2 ? "odd" : users[i],
                             &lists[i], &fc, &fu);
        CU_ASSERT_PTR_NOT_NULL(ms[i]);
    }
    pl_room_t *r = pl_room_get(&rs, "big");
    CU_ASSERT_EQUAL(r->nmembers, N);
    CU_ASSERT_EQUAL(pl_room_user_conns(r, "odd"), N / 2);
    /* leave in an interleaved order */
    for (int i = 0; i < N; i += 2)
        pl_room_leave(ms[i], &lists[i], &lu, &em);
    CU_ASSERT_EQUAL(r->nmembers, N / 2);
    for (int i = 1; i < N; i += 2) {
        pl_room_leave(ms[i], &lists[i], &lu, &em);
        CU_ASSERT_EQUAL(lu, i == N - 1);
    }
    CU_ASSERT_TRUE(em);
    pl_room_drop(&rs, r);
    pl_rooms_free(&rs);
}

/* A connection in many rooms finds each by name; a room with many users
 * keeps its user entries findable while users leave out of order (the
 * index moves with the entry swapped into a hole). */
static void test_many_rooms_and_users(void)
{
    pl_rooms_t rs;
    pl_rooms_init(&rs);
    enum { N = 300 };
    static int conns[N];
    static pl_conn_rooms_t cr[N];
    static pl_member_t *ms[N];
    static char names[N][16];
    int fc, fu, lu, em;
    pl_conn_rooms_t one = {0};
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "room%d", i);
        CU_ASSERT_PTR_NOT_NULL(pl_room_join(&rs, names[i], &conns[0], 1, "alice", &one, &fc, &fu));
    }
    CU_ASSERT_EQUAL(one.n, N);
    for (int i = 0; i < N; i++)
        CU_ASSERT_STRING_EQUAL(pl_room_member(&one, names[i])->room->name, names[i]);
    CU_ASSERT_PTR_NULL(pl_room_member(&one, "room-none"));
    while (one.head) {
        pl_room_t *r = one.head->room;
        pl_room_leave(one.head, &one, &lu, &em);
        CU_ASSERT_TRUE(em);
        pl_room_drop(&rs, r);
    }
    CU_ASSERT_EQUAL(one.n, 0);

    for (int i = 0; i < N; i++)
        ms[i] = pl_room_join(&rs, "big", &conns[i], (uint64_t)i + 1, names[i], &cr[i], &fc, &fu);
    pl_room_t *r = pl_room_get(&rs, "big");
    CU_ASSERT_EQUAL(r->nusers, N);
    for (int i = 0; i < N; i += 3)
        pl_room_leave(ms[i], &cr[i], &lu, &em);
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(pl_room_user_conns(r, names[i]), i % 3 ? 1 : 0);
    for (int i = 0; i < N; i++)
        if (i % 3)
            pl_room_leave(ms[i], &cr[i], &lu, &em);
    CU_ASSERT_TRUE(em);
    pl_room_drop(&rs, r);
    pl_rooms_free(&rs);
}

/* typing_interval: once per user and room per interval. */
static void test_typing_allow(void)
{
    pl_rooms_t rs;
    pl_rooms_init(&rs);
    int c1, c2, fc, fu, lu, em;
    pl_conn_rooms_t l1 = {0}, l2 = {0};
    pl_member_t *m1 = pl_room_join(&rs, "r", &c1, 1, "alice", &l1, &fc, &fu);
    pl_member_t *m2 = pl_room_join(&rs, "r", &c2, 2, "alice", &l2, &fc, &fu);
    pl_room_t *r = pl_room_get(&rs, "r");
    CU_ASSERT_TRUE(pl_room_typing_allow(r, "alice", 1000, 3000));
    CU_ASSERT_FALSE(pl_room_typing_allow(r, "alice", 1001, 3000)); /* any of her connections */
    CU_ASSERT_FALSE(pl_room_typing_allow(r, "alice", 3999, 3000));
    CU_ASSERT_TRUE(pl_room_typing_allow(r, "alice", 4000, 3000));
    CU_ASSERT_FALSE(pl_room_typing_allow(r, "bob", 9000, 3000)); /* not a member here */
    pl_room_leave(m1, &l1, &lu, &em);
    pl_room_leave(m2, &l2, &lu, &em);
    pl_room_drop(&rs, r);
    pl_rooms_free(&rs);
}

static void test_users(void)
{
    pl_rooms_t rs;
    pl_rooms_init(&rs);
    int a, b;
    CU_ASSERT_TRUE(pl_user_add(&rs, "alice", &a));
    CU_ASSERT_FALSE(pl_user_add(&rs, "alice", &b));
    CU_ASSERT_EQUAL(pl_user_get(&rs, "alice")->n, 2);
    CU_ASSERT_FALSE(pl_user_del(&rs, "alice", &a));
    CU_ASSERT_TRUE(pl_user_del(&rs, "alice", &b));
    CU_ASSERT_PTR_NULL(pl_user_get(&rs, "alice"));
    CU_ASSERT_FALSE(pl_user_del(&rs, "nobody", &a));
    pl_rooms_free(&rs);
}

static void test_queue(void)
{
    pl_frame_t *f = pl_frame_new(0x1, "hi", 2);
    pl_mqueue_t q = {0};
    for (int i = 0; i < 20; i++)
        pl_mqueue_push(&q, i, 0, f);
    CU_ASSERT_EQUAL(f->refs, 21);
    pl_mqueue_clear(&q);
    CU_ASSERT_EQUAL(f->refs, 1);
    pl_frame_unref(f);
}

PL_UNIT_SUITE(room, PL_TEST(test_join_leave_both_ways), PL_TEST(test_many_members),
              PL_TEST(test_many_rooms_and_users), PL_TEST(test_typing_allow), PL_TEST(test_users),
              PL_TEST(test_queue))
