/*
 * Unit test registration: each tests/unit/test_<file>.c declares its suite
 * with PL_UNIT_SUITE and is simply linked into the one runner (main.c).
 */
#ifndef PL_UNIT_H
#define PL_UNIT_H

#include <CUnit/CUnit.h>

typedef struct pl_unit_test {
    const char *name;
    void (*fn)(void);
} pl_unit_test_t;

void pl_unit_register(const char *suite, const pl_unit_test_t *tests);

#define PL_TEST(fn)                                                                                \
    {                                                                                              \
#fn, fn                                                                                    \
    }
/* PL_UNIT_SUITE(ws, PL_TEST(a), PL_TEST(b)) */
#define PL_UNIT_SUITE(suite, ...)                                                                  \
    static const pl_unit_test_t suite##_unit_tests[] = {__VA_ARGS__, {NULL, NULL}};                \
    __attribute__((constructor)) static void suite##_unit_register(void)                           \
    {                                                                                              \
        pl_unit_register(#suite, suite##_unit_tests);                                              \
    }

#endif
