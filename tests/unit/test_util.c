/*
 * util.c: the allocation wrappers (never NULL, also for size 0), string
 * copies, the two clocks, randomness and hex, and the macros of util.h.
 */
#include "util.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_alloc(void)
{
    /* size 0 still gives a pointer that free accepts */
    void *p = pl_xmalloc(0);
    CU_ASSERT_PTR_NOT_NULL(p);
    free(p);
    p = pl_xcalloc(0, 0);
    CU_ASSERT_PTR_NOT_NULL(p);
    free(p);
    p = pl_xcalloc(0, 8);
    CU_ASSERT_PTR_NOT_NULL(p);
    free(p);

    unsigned char *z = pl_xcalloc(100, 3);
    int zero = 1;
    for (int i = 0; i < 300; i++)
        zero &= z[i] == 0;
    CU_ASSERT_TRUE(zero);
    /* realloc keeps the contents, also from NULL and down to 0 */
    memset(z, 0xab, 300);
    z = pl_xrealloc(z, 100000);
    CU_ASSERT(z[0] == 0xab && z[299] == 0xab);
    z = pl_xrealloc(z, 0);
    CU_ASSERT_PTR_NOT_NULL(z);
    free(z);
    char *s = pl_xrealloc(NULL, 4);
    CU_ASSERT_PTR_NOT_NULL(s);
    free(s);
}

static void test_strdup(void)
{
    const char *src = "hello";
    char *d = pl_xstrdup(src);
    CU_ASSERT_PTR_NOT_EQUAL(d, src);
    CU_ASSERT_STRING_EQUAL(d, "hello");
    free(d);
    d = pl_xstrdup("");
    CU_ASSERT_STRING_EQUAL(d, "");
    free(d);
    d = pl_xstrndup("abcdef", 3);
    CU_ASSERT_STRING_EQUAL(d, "abc");
    free(d);
    /* exactly n bytes, NULs included, then a terminator */
    d = pl_xstrndup("a\0b\0c", 5);
    CU_ASSERT(memcmp(d, "a\0b\0c", 5) == 0 && d[5] == '\0');
    free(d);
    d = pl_xstrndup("xyz", 0);
    CU_ASSERT_STRING_EQUAL(d, "");
    free(d);
}

static void test_clocks(void)
{
    uint64_t wall = pl_now_ms();
    uint64_t t = (uint64_t)time(NULL) * 1000;
    CU_ASSERT(wall + 2000 > t && wall < t + 2000); /* unix milliseconds, not seconds */
    uint64_t m0 = pl_mono_ms();
    struct timespec ts = {0, 30 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t m1 = pl_mono_ms();
    CU_ASSERT(m1 >= m0 + 29);
    CU_ASSERT(m1 < m0 + 5000);
    CU_ASSERT(pl_now_ms() >= wall);
}

static void test_random(void)
{
    uint8_t a[32], b[32];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    pl_random_bytes(a, sizeof(a));
    pl_random_bytes(b, sizeof(b));
    CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
    static const uint8_t zero[32];
    CU_ASSERT(memcmp(a, zero, sizeof(a)) != 0);
    pl_random_bytes(a, 0); /* nothing to do */

    /* a large request is filled to the end (getrandom may return less) */
    size_t n = 1 << 20;
    uint8_t *big = calloc(n, 1);
    pl_random_bytes(big, n);
    size_t zeros = 0;
    for (size_t i = n - 4096; i < n; i++)
        zeros += big[i] == 0;
    CU_ASSERT(zeros < 64); /* about 16 expected */
    free(big);
}

static void test_hex(void)
{
    char out[2 * 5 + 1];
    pl_hex("\x00\x01\xab\xff\x7f", 5, out);
    CU_ASSERT_STRING_EQUAL(out, "0001abff7f");
    memset(out, 'Z', sizeof(out));
    pl_hex("", 0, out);
    CU_ASSERT_STRING_EQUAL(out, "");
    char sid[33];
    pl_hex("0123456789abcdef", 16, sid);
    CU_ASSERT_EQUAL(strlen(sid), 32);
    CU_ASSERT_STRING_EQUAL(sid, "30313233343536373839616263646566");
}

struct outer {
    int a;
    char name[10];
    long member;
};

static void test_macros(void)
{
    int v[7];
    CU_ASSERT_EQUAL(PL_ARRAY_LEN(v), 7);
    struct outer o;
    long *m = &o.member;
    CU_ASSERT_PTR_EQUAL(container_of(m, struct outer, member), &o);
    CU_ASSERT_PTR_EQUAL(container_of(&o.a, struct outer, a), &o);
    CU_ASSERT(PL_OK == 0 && PL_ERR == -1 && PL_AGAIN != PL_ERR && PL_AGAIN < 0);
}

PL_UNIT_SUITE(util, PL_TEST(test_alloc), PL_TEST(test_strdup), PL_TEST(test_clocks),
              PL_TEST(test_random), PL_TEST(test_hex), PL_TEST(test_macros))
