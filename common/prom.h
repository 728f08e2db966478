/*
 * The Prometheus text exposition format (version 0.0.4), the one renderer
 * behind both programs' GET /metrics: the gateway's shared-memory counters
 * and the archiver's. Callers own the numbers and the names; this file
 * owns the syntax (the HELP/TYPE header, sample lines, how NaN and +Inf
 * and histogram buckets are spelled) so both pages read the same.
 *
 * Labels are passed pre-formatted, the text between the braces, e.g.
 * `kind="redis"` or `reason="timeout",worker="0"`; NULL or "" means none.
 * Label values here come from the programs' own tables, never from
 * clients, so nothing is escaped.
 */
#ifndef PL_PROM_H
#define PL_PROM_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/* "# HELP name help\n# TYPE name type\n"; type is "counter", "gauge" or
 * "histogram". Once per metric family, before its samples. */
void pl_prom_head(pl_buf_t *b, const char *name, const char *type, const char *help);

/* One sample line, "name{labels} value\n". */
void pl_prom_int(pl_buf_t *b, const char *name, const char *labels, int64_t v);
void pl_prom_uint(pl_buf_t *b, const char *name, const char *labels, uint64_t v);
/* A float with six decimals (microseconds, for seconds), or NaN / +Inf /
 * -Inf as Prometheus spells them. */
void pl_prom_float(pl_buf_t *b, const char *name, const char *labels, double v);

/* A whole histogram family: head, then name_bucket{le="<le[i]>"} with the
 * cumulative sum of counts[0..i] (counts per bucket, not cumulative),
 * name_bucket{le="+Inf"} count, name_sum sum, name_count count. le[] is
 * ascending; a count below the sum of counts[] (counters read while
 * they move) is raised to that sum. */
void pl_prom_histogram(pl_buf_t *b, const char *name, const char *help, const double *le,
                       const uint64_t *counts, size_t n, uint64_t count, double sum);

#endif
