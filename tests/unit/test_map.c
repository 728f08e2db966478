/*
 * common/map.c: put, get, del, replace, growth past the initial buckets,
 * iteration seeing every entry once, keys copied in (the caller's
 * buffer may change after put), and the per-map SipHash seed.
 */
#include "map.h"
#include "siphash.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static void test_put_get_del(void)
{
    pl_map_t m;
    pl_map_init(&m);
    int a, b;
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "a"));
    CU_ASSERT_PTR_NULL(pl_map_put(&m, "a", &a));
    CU_ASSERT_PTR_NULL(pl_map_put(&m, "b", &b));
    CU_ASSERT_EQUAL(m.n, 2);
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, "a"), &a);
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, "b"), &b);
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "c"));
    CU_ASSERT_PTR_NULL(pl_map_get(&m, ""));
    /* the empty string is a key like any other */
    CU_ASSERT_PTR_NULL(pl_map_put(&m, "", &b));
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, ""), &b);
    CU_ASSERT_PTR_EQUAL(pl_map_del(&m, ""), &b);

    CU_ASSERT_PTR_EQUAL(pl_map_del(&m, "a"), &a);
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "a"));
    CU_ASSERT_PTR_NULL(pl_map_del(&m, "a")); /* twice: nothing */
    CU_ASSERT_PTR_NULL(pl_map_del(&m, "never"));
    CU_ASSERT_EQUAL(m.n, 1);
    pl_map_clear(&m);
    CU_ASSERT_EQUAL(m.n, 0);
}

static void test_replace(void)
{
    pl_map_t m;
    pl_map_init(&m);
    int a, b;
    CU_ASSERT_PTR_NULL(pl_map_put(&m, "k", &a));
    CU_ASSERT_PTR_EQUAL(pl_map_put(&m, "k", &b), &a); /* the old value back */
    CU_ASSERT_EQUAL(m.n, 1);
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, "k"), &b);
    /* NULL is a value: get cannot tell it from absent, del removes it */
    CU_ASSERT_PTR_EQUAL(pl_map_put(&m, "k", NULL), &b);
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "k"));
    CU_ASSERT_EQUAL(m.n, 1);
    CU_ASSERT_PTR_NULL(pl_map_del(&m, "k"));
    CU_ASSERT_EQUAL(m.n, 0);
    pl_map_clear(&m);
}

static void test_key_copied(void)
{
    pl_map_t m;
    pl_map_init(&m);
    int a;
    char key[8] = "room";
    pl_map_put(&m, key, &a);
    strcpy(key, "xxxx");
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, "room"), &a);
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "xxxx"));
    pl_map_clear(&m);
}

static void test_grow_and_iterate(void)
{
    pl_map_t m;
    pl_map_init(&m);
    size_t nb0 = m.nb;
    enum { N = 2000 };
    static int vals[N];
    static unsigned char seen[N];
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key%d", i);
        CU_ASSERT_PTR_NULL(pl_map_put(&m, k, &vals[i]));
    }
    CU_ASSERT_EQUAL(m.n, N);
    CU_ASSERT_TRUE(m.nb > nb0);
    CU_ASSERT_EQUAL(m.nb & (m.nb - 1), 0); /* still a power of two */
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key%d", i);
        CU_ASSERT_PTR_EQUAL(pl_map_get(&m, k), &vals[i]);
    }
    /* every entry exactly once, its value the one put under its key */
    size_t it, count = 0;
    memset(seen, 0, sizeof(seen));
    for (pl_map_entry_t *e = pl_map_first(&m, &it); e; e = pl_map_next(&m, e, &it)) {
        int i = (int)((int *)e->val - vals);
        CU_ASSERT_FATAL(i >= 0 && i < N);
        snprintf(k, sizeof(k), "key%d", i);
        CU_ASSERT_STRING_EQUAL(e->key, k);
        CU_ASSERT_EQUAL(seen[i], 0);
        seen[i] = 1;
        count++;
    }
    CU_ASSERT_EQUAL(count, N);

    /* delete every other one; the rest are still found and iterated */
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof(k), "key%d", i);
        CU_ASSERT_PTR_EQUAL(pl_map_del(&m, k), &vals[i]);
    }
    CU_ASSERT_EQUAL(m.n, N / 2);
    count = 0;
    for (pl_map_entry_t *e = pl_map_first(&m, &it); e; e = pl_map_next(&m, e, &it))
        count++;
    CU_ASSERT_EQUAL(count, N / 2);
    CU_ASSERT_PTR_NULL(pl_map_get(&m, "key1234"));
    CU_ASSERT_PTR_EQUAL(pl_map_get(&m, "key1235"), &vals[1235]);
    pl_map_clear(&m);
}

static void test_empty_iterate(void)
{
    pl_map_t m;
    pl_map_init(&m);
    size_t it;
    CU_ASSERT_PTR_NULL(pl_map_first(&m, &it));
    int a;
    pl_map_put(&m, "only", &a);
    pl_map_entry_t *e = pl_map_first(&m, &it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_STRING_EQUAL(e->key, "only");
    CU_ASSERT_PTR_NULL(pl_map_next(&m, e, &it));
    pl_map_clear(&m);
}

/* The hash is SipHash-1-3 under the seed the map was created with: two
 * seeds place the same key differently, and a map keeps its own seed
 * (still finds every key) after the process seed changes. */
static void test_seeded(void)
{
    uint8_t s1[16] = {1}, s2[16] = {2};
    pl_map_t a, b;
    pl_map_seed(s1);
    pl_map_init(&a);
    CU_ASSERT_EQUAL(pl_map_hash(&a, "lobby"), pl_siphash13(s1, "lobby", 5));
    int v[200];
    char k[16];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        pl_map_put(&a, k, &v[i]);
    }
    pl_map_seed(s2);
    pl_map_init(&b);
    CU_ASSERT_EQUAL(pl_map_hash(&b, "lobby"), pl_siphash13(s2, "lobby", 5));
    CU_ASSERT_NOT_EQUAL(pl_map_hash(&a, "lobby"), pl_map_hash(&b, "lobby"));
    for (int i = 0; i < 200; i++) { /* a still uses s1, also while growing */
        snprintf(k, sizeof(k), "k%d", i);
        CU_ASSERT_PTR_EQUAL(pl_map_get(&a, k), &v[i]);
        pl_map_put(&a, k, &v[i]);
    }
    /* a random reseed: a new map gets a seed other than both */
    pl_map_reseed();
    pl_map_t c;
    pl_map_init(&c);
    CU_ASSERT_NOT_EQUAL(pl_map_hash(&c, "lobby"), pl_map_hash(&a, "lobby"));
    CU_ASSERT_NOT_EQUAL(pl_map_hash(&c, "lobby"), pl_map_hash(&b, "lobby"));
    pl_map_clear(&a);
    pl_map_clear(&b);
    pl_map_clear(&c);
}

PL_UNIT_SUITE(map, PL_TEST(test_put_get_del), PL_TEST(test_replace), PL_TEST(test_key_copied),
              PL_TEST(test_grow_and_iterate), PL_TEST(test_empty_iterate), PL_TEST(test_seeded))
