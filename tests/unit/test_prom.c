/*
 * common/prom.c: the exact bytes of the text format both /metrics pages
 * are made of (their integration tests read these lines).
 */
#include "prom.h"
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(pl_buf_t *b, const char *want)
{
    const char *got = pl_buf_cstr(b);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    pl_buf_free(b);
}

static void test_head_and_samples(void)
{
    pl_buf_t b = {0};
    pl_prom_head(&b, "parley_x_total", "counter", "Things done.");
    pl_prom_uint(&b, "parley_x_total", NULL, UINT64_MAX);
    pl_prom_int(&b, "parley_x_total", "", -3);
    pl_prom_int(&b, "parley_x_total", "worker=\"1\"", 7);
    pl_prom_uint(&b, "parley_x_total", "kind=\"a\",worker=\"0\"", 0);
    expect(&b, "# HELP parley_x_total Things done.\n"
               "# TYPE parley_x_total counter\n"
               "parley_x_total 18446744073709551615\n"
               "parley_x_total -3\n"
               "parley_x_total{worker=\"1\"} 7\n"
               "parley_x_total{kind=\"a\",worker=\"0\"} 0\n");
}

static void test_floats(void)
{
    pl_buf_t b = {0};
    pl_prom_float(&b, "g", NULL, NAN);
    pl_prom_float(&b, "g", NULL, INFINITY);
    pl_prom_float(&b, "g", NULL, -INFINITY);
    pl_prom_float(&b, "g", "le=\"1\"", 1.2345678);
    pl_prom_float(&b, "g", NULL, 0);
    expect(&b, "g NaN\ng +Inf\ng -Inf\ng{le=\"1\"} 1.234568\ng 0.000000\n");
}

static void test_histogram(void)
{
    static const double le[] = {0.005, 0.25, 1, 10};
    const uint64_t counts[] = {1, 0, 2, 1};
    pl_buf_t b = {0};
    pl_prom_histogram(&b, "h_seconds", "Time.", le, counts, 4, 5, 1.5);
    expect(&b, "# HELP h_seconds Time.\n"
               "# TYPE h_seconds histogram\n"
               "h_seconds_bucket{le=\"0.005\"} 1\n"
               "h_seconds_bucket{le=\"0.25\"} 1\n"
               "h_seconds_bucket{le=\"1\"} 3\n"
               "h_seconds_bucket{le=\"10\"} 4\n"
               "h_seconds_bucket{le=\"+Inf\"} 5\n"
               "h_seconds_sum 1.500000\n"
               "h_seconds_count 5\n");
    /* a count read before the buckets moved on is raised to their sum */
    pl_prom_histogram(&b, "h", "T.", le, counts, 4, 2, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(pl_buf_cstr(&b), "h_bucket{le=\"+Inf\"} 4\nh_sum 0.000000\n"
                                                   "h_count 4\n"));
    pl_buf_free(&b);
}

PL_UNIT_SUITE(prom, PL_TEST(test_head_and_samples), PL_TEST(test_floats), PL_TEST(test_histogram))
