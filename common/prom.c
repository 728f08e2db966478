/*
 * Prometheus text rendering (see prom.h) into a pl_buf.
 */
#include "prom.h"

#include <math.h>

/* "name" or "name{labels}" */
static void series(pl_buf_t *b, const char *name, const char *labels)
{
    if (labels && *labels)
        pl_buf_printf(b, "%s{%s} ", name, labels);
    else
        pl_buf_printf(b, "%s ", name);
}

void pl_prom_head(pl_buf_t *b, const char *name, const char *type, const char *help)
{
    pl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void pl_prom_int(pl_buf_t *b, const char *name, const char *labels, int64_t v)
{
    series(b, name, labels);
    pl_buf_printf(b, "%lld\n", (long long)v);
}

void pl_prom_uint(pl_buf_t *b, const char *name, const char *labels, uint64_t v)
{
    series(b, name, labels);
    pl_buf_printf(b, "%llu\n", (unsigned long long)v);
}

void pl_prom_float(pl_buf_t *b, const char *name, const char *labels, double v)
{
    series(b, name, labels);
    if (isnan(v))
        pl_buf_add_str(b, "NaN\n");
    else if (isinf(v))
        pl_buf_add_str(b, v > 0 ? "+Inf\n" : "-Inf\n");
    else
        pl_buf_printf(b, "%.6f\n", v);
}

void pl_prom_histogram(pl_buf_t *b, const char *name, const char *help, const double *le,
                       const uint64_t *counts, size_t n, uint64_t count, double sum)
{
    pl_prom_head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        pl_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, le[i], (unsigned long long)cum);
    }
    /* counters read while writers run can be a step apart: +Inf and
     * _count must never be below the last bucket */
    if (count < cum)
        count = cum;
    pl_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
    pl_buf_printf(b, "%s_sum %.6f\n", name, sum);
    pl_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)count);
}
