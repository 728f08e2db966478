/*
 * The one CUnit runner: suites register themselves from constructors
 * (unit.h); this collects them, runs all, prints CUnit's summary and exits
 * non-zero on any failure.
 */
#include "unit.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_SUITES 64

static struct {
    const char *name;
    const pl_unit_test_t *tests;
} suites[MAX_SUITES];
static int nsuites;

void pl_unit_register(const char *suite, const pl_unit_test_t *tests)
{
    if (nsuites == MAX_SUITES) {
        fprintf(stderr, "too many unit suites\n");
        exit(2);
    }
    suites[nsuites].name = suite;
    suites[nsuites].tests = tests;
    nsuites++;
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (int i = 0; i < nsuites; i++) {
        CU_pSuite s = CU_add_suite(suites[i].name, NULL, NULL);
        for (const pl_unit_test_t *t = suites[i].tests; t->name; t++)
            CU_add_test(s, t->name, t->fn);
    }
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no unit tests ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
