/*
 * common/buf.c: appends of every kind, growth across the first
 * allocation, writing straight into reserved room, and the C-string view.
 */
#include "buf.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void test_empty_buffer(void)
{
    pl_buf_t b = {0};
    CU_ASSERT_PTR_NULL(b.p);
    pl_buf_add(&b, "", 0); /* nothing to add allocates nothing */
    CU_ASSERT_PTR_NULL(b.p);
    CU_ASSERT_STRING_EQUAL(pl_buf_cstr(&b), "");
    CU_ASSERT_EQUAL(b.n, 0);
    pl_buf_free(&b);
    CU_ASSERT_PTR_NULL(b.p);
    CU_ASSERT_EQUAL(b.cap, 0);
}

static void test_appends_and_growth(void)
{
    pl_buf_t b = {0};
    pl_buf_add(&b, "a\0b", 3); /* bytes, NUL included */
    pl_buf_add_str(&b, "cd");
    pl_buf_printf(&b, "-%d-%s", 42, "x");
    CU_ASSERT_EQUAL(b.n, 3 + 2 + 5);
    CU_ASSERT(memcmp(b.p, "a\0bcd-42-x", b.n) == 0);
    /* grow well past the first allocation, a byte and a chunk at a time */
    for (int i = 0; i < 1000; i++)
        pl_buf_add(&b, "y", 1);
    char big[5000];
    memset(big, 'z', sizeof(big));
    pl_buf_add(&b, big, sizeof(big));
    CU_ASSERT_EQUAL(b.n, 10 + 1000 + 5000);
    CU_ASSERT(b.cap >= b.n);
    CU_ASSERT_EQUAL(b.p[10], 'y');
    CU_ASSERT_EQUAL(b.p[b.n - 1], 'z');
    CU_ASSERT(memcmp(b.p, "a\0bcd-42-x", 10) == 0); /* what was there survived */
    pl_buf_free(&b);
}

static void test_printf_longer_than_room(void)
{
    pl_buf_t b = {0};
    pl_buf_add_str(&b, "head:");
    char arg[3000];
    memset(arg, 'q', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    pl_buf_printf(&b, "%s|%s", arg, arg);
    CU_ASSERT_EQUAL(b.n, 5 + 2 * 2999 + 1);
    CU_ASSERT(memcmp(b.p, "head:qqq", 8) == 0);
    CU_ASSERT_EQUAL(b.p[5 + 2999], '|');
    CU_ASSERT_EQUAL(strlen(pl_buf_cstr(&b)), b.n);
    pl_buf_free(&b);
}

static void test_reserve_then_write(void)
{
    pl_buf_t b = {0};
    pl_buf_add_str(&b, "ab");
    pl_buf_reserve(&b, 600);
    CU_ASSERT(b.cap - b.n >= 600);
    memset(b.p + b.n, 'c', 600);
    b.n += 600;
    size_t cap = b.cap;
    pl_buf_reserve(&b, 0); /* nothing needed: no realloc */
    CU_ASSERT_EQUAL(b.cap, cap);
    CU_ASSERT_EQUAL(b.p[601], 'c');
    /* cstr adds a NUL that is not counted, and later appends overwrite it */
    CU_ASSERT_EQUAL(strlen(pl_buf_cstr(&b)), 602);
    CU_ASSERT_EQUAL(b.n, 602);
    pl_buf_add_str(&b, "d");
    CU_ASSERT_EQUAL(b.p[602], 'd');
    /* reset keeps the memory */
    pl_buf_reset(&b);
    CU_ASSERT_EQUAL(b.n, 0);
    CU_ASSERT(b.cap >= 603);
    pl_buf_add_str(&b, "new");
    CU_ASSERT_STRING_EQUAL(pl_buf_cstr(&b), "new");
    pl_buf_free(&b);
}

PL_UNIT_SUITE(buf, PL_TEST(test_empty_buffer), PL_TEST(test_appends_and_growth),
              PL_TEST(test_printf_longer_than_room), PL_TEST(test_reserve_then_write))
