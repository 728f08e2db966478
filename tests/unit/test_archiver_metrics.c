/*
 * archiver/metrics.c: the series /metrics shows, as the integration tests
 * and dashboards read them.
 */
#include "../../archiver/metrics.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void test_metrics_render(void)
{
    pl_arch_metrics_t m;
    memset(&m, 0, sizeof(m));
    atomic_store(&m.rows_written, 5000);
    atomic_store(&m.conflicts, 1);
    atomic_store(&m.stream_lag, -1);
    atomic_store(&m.errors[ERRK_MALFORMED], 3);
    atomic_store(&m.batches, 2);
    atomic_store(&m.batch_buckets[1], 1);
    atomic_store(&m.batch_buckets[3], 1);
    char *t = pl_arch_metrics_render(&m);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_rows_written_total 5000\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_conflicts_total 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nparley_archiver_stream_lag NaN\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_errors_total{kind=\"malformed\"} 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.005\"} 0\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.01\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"0.05\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_bucket{le=\"+Inf\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "parley_archiver_batch_seconds_count 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE parley_archiver_stream_pending gauge\n"));
    free(t);
}

PL_UNIT_SUITE(archiver_metrics, PL_TEST(test_metrics_render))
