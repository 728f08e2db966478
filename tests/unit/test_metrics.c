/*
 * net/metrics.c: every worker block is summed into one series plus a
 * per-worker series, registered series and limit names keep their ids,
 * and a dead process's gauges (not its counters) are zeroed.
 */
#include "metrics.h"
#include "unit.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

/* The rendered page as a NUL-terminated string (caller frees). */
static char *render(void)
{
    struct evbuffer *out = evbuffer_new();
    pl_metrics_render(out);
    size_t n = evbuffer_get_length(out);
    char *s = malloc(n + 1);
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    evbuffer_free(out);
    return s;
}

static int has_line(const char *page, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = page; (p = strstr(p, line)) != NULL; p += n)
        if ((p == page || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void test_sums_and_gauges(void)
{
    CU_ASSERT_EQUAL_FATAL(pl_metrics_create(2), 0);
    pl_metrics_t *w0 = pl_metrics_block(0), *w1 = pl_metrics_block(1);
    w0->connections_total = 3;
    w1->connections_total = 4;
    w0->connections_open = 2;
    w1->connections_open = 5;

    int id = pl_metrics_register(w0, "parley_unit_things_total", "counter", "Things.");
    CU_ASSERT(id >= 0);
    CU_ASSERT_EQUAL(pl_metrics_register(w1, "parley_unit_things_total", "counter", "Things."), id);
    int g = pl_metrics_register(w0, "parley_unit_level", "gauge", "A level.");
    CU_ASSERT(g >= 0 && g != id);
    /* every worker makes the same calls in its own block */
    CU_ASSERT_EQUAL(pl_metrics_register(w1, "parley_unit_level", "gauge", "A level."), g);
    pl_metrics_add(w0, id, 10);
    pl_metrics_add(w1, id, 5);
    pl_metrics_add(w1, g, 7);
    pl_metrics_add(w1, -1, 100); /* an unregistered id is a no-op */

    /* a labelled family: one HELP/TYPE, worker="N" added to its labels */
    int la = pl_metrics_register(w0, "parley_unit_src_total{source=\"a\"}", "counter", "By src.");
    int lb = pl_metrics_register(w0, "parley_unit_src_total{source=\"b\"}", "counter", "By src.");
    CU_ASSERT(la >= 0 && lb >= 0 && la != lb);
    pl_metrics_add(w0, la, 2);
    pl_metrics_add(w1, la, 3);
    pl_metrics_add(w1, lb, 4);

    int lim = pl_metrics_limit_register("unit_limit");
    CU_ASSERT(lim >= PL_LIMIT_NFIXED);
    CU_ASSERT_EQUAL(pl_metrics_limit_register("unit_limit"), lim);
    CU_ASSERT_EQUAL(pl_metrics_limit_register("max_connections"), PL_LIMIT_MAX_CONNECTIONS);
    w1->limit_rejections[lim] += 2;
    pl_metrics_close_code(w0, 1001);
    pl_metrics_close_code(w0, 4001); /* outside 1000..1015: "other" */

    char *page = render();
    CU_ASSERT(has_line(page, "# TYPE parley_connections_total counter"));
    CU_ASSERT(has_line(page, "parley_connections_total 7"));
    CU_ASSERT(has_line(page, "parley_connections_open 7"));
    CU_ASSERT(has_line(page, "parley_unit_things_total 15"));
    CU_ASSERT(has_line(page, "parley_unit_level 7"));
    CU_ASSERT(has_line(page, "parley_limit_rejections_total{limit=\"unit_limit\"} 2"));
    CU_ASSERT(has_line(page, "parley_close_codes_sent_total{code=\"1001\"} 1"));
    CU_ASSERT(has_line(page, "parley_close_codes_sent_total{code=\"other\"} 1"));
    CU_ASSERT(strstr(page, "worker=\"1\"") != NULL); /* per-worker series too */
    CU_ASSERT(has_line(page, "# TYPE parley_unit_src_total counter"));
    CU_ASSERT(strstr(strstr(page, "# TYPE parley_unit_src_total") + 1,
                     "# TYPE parley_unit_src_total") == NULL);
    CU_ASSERT(has_line(page, "parley_unit_src_total{source=\"a\"} 5"));
    CU_ASSERT(has_line(page, "parley_unit_src_total{source=\"a\",worker=\"1\"} 3"));
    CU_ASSERT(has_line(page, "parley_unit_src_total{source=\"b\"} 4"));
    free(page);

    /* worker 1 died: its gauges go, its counters stay (totals are monotonic) */
    pl_metrics_reset_gauges(1);
    page = render();
    CU_ASSERT(has_line(page, "parley_connections_open 2"));
    CU_ASSERT(has_line(page, "parley_unit_level 0"));
    CU_ASSERT(has_line(page, "parley_connections_total 7"));
    CU_ASSERT(has_line(page, "parley_unit_things_total 15"));
    free(page);
}

PL_UNIT_SUITE(metrics, PL_TEST(test_sums_and_gauges))
