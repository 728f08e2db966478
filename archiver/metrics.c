/*
 * The archiver's series (rendered with common/prom.h) and the /metrics +
 * /healthz HTTP server (libevent evhttp in a detached thread; see
 * metrics.h).
 */
#include "metrics.h"
#include "buf.h"
#include "log.h"
#include "parse.h"
#include "prom.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pl_arch_metrics_t pl_arch_metrics;

const double pl_arch_batch_bucket_le[PL_BATCH_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,    2.5,   5,    10};

static const char *const kind_names[ERRK_COUNT] = {"redis", "mysql", "malformed", "conflict",
                                                   "missing"};

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void pl_arch_metrics_error(enum pl_err_kind kind)
{
    atomic_fetch_add_explicit(&pl_arch_metrics.errors[kind], 1, memory_order_relaxed);
}

void pl_arch_metrics_batch(uint64_t us)
{
    atomic_fetch_add_explicit(&pl_arch_metrics.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&pl_arch_metrics.batch_us_sum, us, memory_order_relaxed);
    double s = (double)us / 1e6;
    for (int i = 0; i < PL_BATCH_BUCKETS; i++) {
        if (s <= pl_arch_batch_bucket_le[i]) {
            atomic_fetch_add_explicit(&pl_arch_metrics.batch_buckets[i], 1, memory_order_relaxed);
            return;
        }
    }
    /* Larger than the last bucket: only +Inf (= count) holds it. */
}

static void counter(pl_buf_t *b, const char *name, const char *help, uint64_t v)
{
    pl_prom_head(b, name, "counter", help);
    pl_prom_uint(b, name, NULL, v);
}

/* A sampled gauge; negative means "unknown" and reads NaN. */
static void gauge(pl_buf_t *b, const char *name, const char *help, int64_t v)
{
    pl_prom_head(b, name, "gauge", help);
    if (v < 0)
        pl_prom_float(b, name, NULL, NAN);
    else
        pl_prom_int(b, name, NULL, v);
}

char *pl_arch_metrics_render(pl_arch_metrics_t *m)
{
    pl_buf_t b = {0};
    gauge(&b, "parley_archiver_stream_pending",
          "Entries delivered to the consumer group but not yet acknowledged.",
          LOAD(m->stream_pending));
    gauge(&b, "parley_archiver_stream_lag",
          "Entries in the stream not yet delivered to the consumer group (NaN if unknown).",
          LOAD(m->stream_lag));
    gauge(&b, "parley_archiver_stream_length", "Entries in the stream (XLEN).",
          LOAD(m->stream_length));
    counter(&b, "parley_archiver_rows_written_total", "Rows newly inserted into messages.",
            LOAD(m->rows_written));
    counter(&b, "parley_archiver_duplicates_total",
            "Re-delivered entries already stored with the same msg_id (idempotent).",
            LOAD(m->duplicates));
    counter(&b, "parley_archiver_conflicts_total",
            "Entries whose (room, seq) is stored with a different msg_id.", LOAD(m->conflicts));
    counter(&b, "parley_archiver_batches_total", "Batches committed.", LOAD(m->batches));
    counter(&b, "parley_archiver_dead_letters_total",
            "Entries copied to the dead-letter stream and acknowledged.", LOAD(m->dead_letters));
    counter(&b, "parley_archiver_trimmed_total", "Acknowledged entries trimmed from the stream.",
            LOAD(m->trimmed));
    pl_prom_head(&b, "parley_archiver_errors_total", "counter", "Errors by kind.");
    for (int k = 0; k < ERRK_COUNT; k++) {
        char label[32];
        snprintf(label, sizeof(label), "kind=\"%s\"", kind_names[k]);
        pl_prom_uint(&b, "parley_archiver_errors_total", label, LOAD(m->errors[k]));
    }
    uint64_t buckets[PL_BATCH_BUCKETS];
    for (int i = 0; i < PL_BATCH_BUCKETS; i++)
        buckets[i] = LOAD(m->batch_buckets[i]);
    pl_prom_histogram(&b, "parley_archiver_batch_seconds", "Time to write and commit one batch.",
                      pl_arch_batch_bucket_le, buckets, PL_BATCH_BUCKETS, LOAD(m->batches),
                      (double)LOAD(m->batch_us_sum) / 1e6);
    return pl_buf_cstr(&b);
}

/* ---- HTTP ------------------------------------------------------------- */

static struct event_base *http_base;
static struct evhttp *http;

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evbuffer_add_printf(out, "method not allowed\n");
        evhttp_send_reply(req, 405, "Method Not Allowed", out);
    } else if (strcmp(uri, "/metrics") == 0) {
        char *text = pl_arch_metrics_render(&pl_arch_metrics);
        evbuffer_add(out, text, strlen(text));
        free(text);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/healthz") == 0) {
        evbuffer_add_printf(out, "ok\n");
        evhttp_send_reply(req, 200, "OK", out);
    } else {
        evbuffer_add_printf(out, "not found\n");
        evhttp_send_reply(req, 404, "Not Found", out);
    }
    evbuffer_free(out);
}

static void *serve(void *arg)
{
    event_base_dispatch(http_base);
    return NULL;
}

int pl_arch_metrics_start(const char *listen, char *err, size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "metrics_listen '%s' is not host:port", listen);
        return -1;
    }
    char host[256];
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof(host))
        hl = sizeof(host) - 1;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    uint64_t port;
    if (pl_parse_u64(colon + 1, strlen(colon + 1), &port) < 0 || port > 65535) {
        snprintf(err, errlen, "metrics_listen '%s' has no valid port", listen);
        return -1;
    }
    http_base = event_base_new();
    http = evhttp_new(http_base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, host, (ev_uint16_t)port) != 0) {
        snprintf(err, errlen, "cannot listen on %s for metrics", listen);
        evhttp_free(http);
        event_base_free(http_base);
        http = NULL;
        http_base = NULL;
        return -1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL) != 0) {
        snprintf(err, errlen, "pthread_create() failed for the metrics server");
        return -1;
    }
    pthread_detach(t);
    pl_log_info("serving metrics\tlisten=%s", listen);
    return 0;
}
