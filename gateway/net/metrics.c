/*
 * Shared-memory metrics (see metrics.h): the mapping, and the page of
 * series driven by one table of scalar fields (the text format itself is
 * common/prom.c's, shared with the archiver).
 */
#include "metrics.h"
#include "buf.h"
#include "log.h"
#include "prom.h"
#include "util.h"

#include <event2/buffer.h>

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static pl_metrics_t *blocks; /* PL_METRICS_BLOCKS_PER_SLOT * nslots, shared by all processes */
static int nslots;

/* Scalar fields, rendered as sum + one series per worker slot. To add a
 * counter: a field in pl_metrics_t and one line here. */
static const struct {
    const char *name;
    const char *type; /* "counter" or "gauge" */
    const char *help;
    size_t offset;
} scalars[] = {
    {"parley_connections_open", "gauge", "Client sockets currently open.",
     offsetof(pl_metrics_t, connections_open)},
    {"parley_connections_total", "counter", "Client sockets accepted.",
     offsetof(pl_metrics_t, connections_total)},
    {"parley_frames_in_total", "counter", "WebSocket frames received.",
     offsetof(pl_metrics_t, frames_in_total)},
    {"parley_frames_out_total", "counter", "WebSocket frames queued for sending.",
     offsetof(pl_metrics_t, frames_out_total)},
    {"parley_bytes_in_total", "counter", "Bytes read from clients.",
     offsetof(pl_metrics_t, bytes_in_total)},
    {"parley_bytes_out_total", "counter", "Bytes written to clients.",
     offsetof(pl_metrics_t, bytes_out_total)},
    /* chat protocol counters go here */
};

static const char *const hs_names[PL_HS_NREASONS] = {
    [PL_HS_MALFORMED] = "malformed",     [PL_HS_TOO_LARGE] = "too_large",
    [PL_HS_NOT_FOUND] = "not_found",     [PL_HS_METHOD] = "method",
    [PL_HS_NOT_UPGRADE] = "not_upgrade", [PL_HS_BAD_KEY] = "bad_key",
    [PL_HS_BAD_VERSION] = "bad_version", [PL_HS_ORIGIN] = "origin",
    [PL_HS_TIMEOUT] = "timeout",
};

/* Limit names by id: the fixed ones, then pl_metrics_limit_register()ed
 * ones (per process, registered in the same order in every worker). */
static const char *limit_names[PL_LIMITS_MAX] = {
    [PL_LIMIT_MAX_CONNECTIONS] = "max_connections",
    [PL_LIMIT_MAX_CONNECTIONS_PER_IP] = "max_connections_per_ip",
    [PL_LIMIT_OPEN_FILES] = "open_files",
};
static int nlimits = PL_LIMIT_NFIXED;

int pl_metrics_limit_register(const char *name)
{
    for (int i = 0; i < nlimits; i++)
        if (strcmp(limit_names[i], name) == 0)
            return i;
    if (nlimits == PL_LIMITS_MAX) {
        pl_log_error("too many limit names registered\tname=%s max=%d", name, PL_LIMITS_MAX);
        return -1;
    }
    limit_names[nlimits] = pl_xstrdup(name);
    return nlimits++;
}

const char *pl_metrics_limit_name(int id)
{
    return id >= 0 && id < nlimits ? limit_names[id] : "unknown";
}

/* Run-time registered series: per process, but every worker registers the
 * same ones in the same order, so an id means the same series everywhere. */
static struct {
    char *name, *type, *help;
} extras[PL_METRICS_EXTRA];
static int nextras;

int pl_metrics_register(pl_metrics_t *m, const char *name, const char *type, const char *help)
{
    for (int i = 0; i < nextras; i++) {
        if (strcmp(extras[i].name, name) == 0) {
            if (strcmp(extras[i].type, "gauge") == 0)
                m->extra_gauges |= 1u << i;
            return i;
        }
    }
    if (nextras == PL_METRICS_EXTRA) {
        pl_log_error("too many metrics registered\tname=%s max=%d", name, PL_METRICS_EXTRA);
        return -1;
    }
    int id = nextras++;
    extras[id].name = pl_xstrdup(name);
    extras[id].type = pl_xstrdup(strcmp(type, "gauge") == 0 ? "gauge" : "counter");
    extras[id].help = pl_xstrdup(help);
    if (strcmp(extras[id].type, "gauge") == 0)
        m->extra_gauges |= 1u << id;
    return id;
}

const char *pl_metrics_hs_reason_name(enum pl_hs_reason r)
{
    return (unsigned)r < PL_HS_NREASONS ? hs_names[r] : "unknown";
}

int pl_metrics_create(int n)
{
    size_t size = sizeof(pl_metrics_t) * PL_METRICS_BLOCKS_PER_SLOT * (size_t)n;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pl_log_error("mmap() failed for metrics: %s", strerror(errno));
        return -1;
    }
    blocks = p;
    nslots = n;
    return 0;
}

pl_metrics_t *pl_metrics_block(int b)
{
    assert(blocks != NULL && b >= 0 && b < PL_METRICS_BLOCKS_PER_SLOT * nslots);
    return &blocks[b];
}

void pl_metrics_reset_gauges(int b)
{
    pl_metrics_t *m = pl_metrics_block(b);
    m->connections_open = 0;
    for (int i = 0; i < PL_METRICS_EXTRA; i++)
        if (m->extra_gauges & (1u << i))
            m->extra[i] = 0;
}

void pl_metrics_close_code(pl_metrics_t *m, unsigned code)
{
    if (code >= PL_METRICS_CLOSE_MIN && code < PL_METRICS_CLOSE_MIN + PL_METRICS_CLOSE_N - 1)
        m->close_codes_sent[code - PL_METRICS_CLOSE_MIN]++;
    else
        m->close_codes_sent[PL_METRICS_CLOSE_N - 1]++;
}

/* Reads a field as a signed value (gauges may briefly go negative when a
 * reader races a writer; counters are far below 2^63). */
static int64_t field(const pl_metrics_t *m, size_t off)
{
    int64_t v;
    memcpy(&v, (const char *)m + off, sizeof(v));
    return v;
}

static int64_t slot_sum(int slot, size_t off)
{
    int64_t sum = 0;
    for (int k = 0; k < PL_METRICS_BLOCKS_PER_SLOT; k++)
        sum += field(&blocks[slot + k * nslots], off);
    return sum;
}

/* One series of a labelled family (label=value): the sum over workers,
 * then each worker; the family's HELP/TYPE first when header is set. */
static void render_labelled(pl_buf_t *b, const char *name, const char *type, const char *help,
                            const char *label, const char *value, size_t off, int header)
{
    if (header)
        pl_prom_head(b, name, type, help);
    int64_t total = 0;
    for (int s = 0; s < nslots; s++)
        total += slot_sum(s, off);
    char labels[96];
    snprintf(labels, sizeof(labels), "%s=\"%s\"", label, value);
    pl_prom_int(b, name, labels, total);
    for (int s = 0; s < nslots; s++) {
        snprintf(labels, sizeof(labels), "%s=\"%s\",worker=\"%d\"", label, value, s);
        pl_prom_int(b, name, labels, slot_sum(s, off));
    }
}

/* One unlabelled series: HELP/TYPE, the sum over workers, then each worker. */
static void render_series(pl_buf_t *b, const char *name, const char *type, const char *help,
                          size_t off)
{
    pl_prom_head(b, name, type, help);
    int64_t total = 0;
    for (int s = 0; s < nslots; s++)
        total += slot_sum(s, off);
    pl_prom_int(b, name, NULL, total);
    for (int s = 0; s < nslots; s++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "worker=\"%d\"", s);
        pl_prom_int(b, name, labels, slot_sum(s, off));
    }
}

/* A registered series; a name with labels, `base{k="v"}`, is one series
 * of the family base: HELP/TYPE once (for its first registered member),
 * the per-worker series get worker="N" added to its labels. */
static void render_extra(pl_buf_t *b, int id)
{
    size_t off = offsetof(pl_metrics_t, extra) + (size_t)id * sizeof(int64_t);
    const char *name = extras[id].name, *brace = strchr(name, '{');
    size_t nl = strlen(name);
    if (brace == NULL || nl < 3 || name[nl - 1] != '}' || nl > 160) {
        render_series(b, name, extras[id].type, extras[id].help, off);
        return;
    }
    char base[128], labels[160];
    size_t bl = (size_t)(brace - name);
    snprintf(base, sizeof(base), "%.*s", (int)bl, name);
    int first = 1;
    for (int k = 0; k < id && first; k++)
        if (strncmp(extras[k].name, name, bl + 1) == 0)
            first = 0;
    if (first)
        pl_prom_head(b, base, extras[id].type, extras[id].help);
    int64_t total = 0;
    for (int s = 0; s < nslots; s++)
        total += slot_sum(s, off);
    snprintf(labels, sizeof(labels), "%.*s", (int)(nl - bl - 2), brace + 1);
    pl_prom_int(b, base, labels, total);
    for (int s = 0; s < nslots; s++) {
        char wl[192];
        snprintf(wl, sizeof(wl), "%s,worker=\"%d\"", labels, s);
        pl_prom_int(b, base, wl, slot_sum(s, off));
    }
}

void pl_metrics_render(struct evbuffer *out)
{
    if (blocks == NULL)
        return;
    pl_buf_t b = {0};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
        render_series(&b, scalars[i].name, scalars[i].type, scalars[i].help, scalars[i].offset);
    for (int id = 0; id < nextras; id++)
        render_extra(&b, id);
    for (int r = 0; r < PL_HS_NREASONS; r++)
        render_labelled(&b, "parley_handshake_failures_total", "counter",
                        "HTTP requests that did not become a WebSocket, by reason.", "reason",
                        hs_names[r],
                        offsetof(pl_metrics_t, handshake_failures) + r * sizeof(uint64_t), r == 0);
    for (int id = 0; id < nlimits; id++)
        render_labelled(&b, "parley_limit_rejections_total", "counter",
                        "Connections or requests refused by a limit, by limit (see docs/ops.md).",
                        "limit", limit_names[id],
                        offsetof(pl_metrics_t, limit_rejections) + (size_t)id * sizeof(uint64_t),
                        id == 0);
    for (int k = 0; k < PL_METRICS_CLOSE_N; k++) {
        char code[16];
        if (k == PL_METRICS_CLOSE_N - 1)
            strcpy(code, "other");
        else
            snprintf(code, sizeof(code), "%d", PL_METRICS_CLOSE_MIN + k);
        /* only codes that were ever used, to keep the page short */
        size_t off = offsetof(pl_metrics_t, close_codes_sent) + (size_t)k * sizeof(uint64_t);
        int used = 0;
        for (int s = 0; s < nslots; s++)
            used |= slot_sum(s, off) != 0;
        if (k == 0 || used)
            render_labelled(&b, "parley_close_codes_sent_total", "counter",
                            "WebSocket close frames sent, by code.", "code", code, off, k == 0);
    }
    evbuffer_add(out, b.p, b.n);
    pl_buf_free(&b);
}
