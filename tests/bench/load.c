/*
 * parley-load: load generator for the Parley gateway. One process, one
 * libevent loop, many WebSocket connections (wsclient.c) spread round-robin
 * over one or more gateway URLs and, optionally, over source addresses in
 * 127.0.0.0/8. Three modes:
 *
 *   idle    open N connections (bounded handshakes in flight), hold them
 *           for H seconds answering pings, report handshakes/s and survivors
 *   fanout  M members in one room, P of them publish with a window of W
 *           unacknowledged sends each, for D seconds
 *   rooms   R rooms x K members, every member publishes, T messages/s in
 *           total (paced), for D seconds
 *   history N readers, each in a closed loop (one request outstanding, an
 *           optional think time) asks for a history page of one room for D
 *           seconds; reply latency and page checks
 *
 * Every message text is "PLB:<publisher>:<counter>:<mono ns>[:xxx...]" so a
 * receiver knows who sent it, which one it is and when (one host, so the
 * monotonic clock is shared). Per message we count deliveries to the other
 * members; per (receiver, publisher) we check order. See README.md for the
 * definitions of the reported numbers.
 *
 * Everything is bounded: connection count, setup time, run time, drain
 * time and a hard deadline after which the process exits by itself.
 */
#include "util.h"
#include "wsclient.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <jwt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum mode {
    MODE_IDLE,
    MODE_FANOUT,
    MODE_ROOMS,
    MODE_HISTORY,
};

/* Request ids: fixed ones for setup, sends use SEND_ID_BASE + counter. */
#define ID_AUTH 1
#define ID_JOIN 2
#define SEND_ID_BASE 16

enum client_state {
    CL_NEW,        /* not launched yet */
    CL_CONNECTING, /* TCP + upgrade in flight (counts against --inflight) */
    CL_AUTH,       /* auth sent, waiting for the reply (in flight) */
    CL_JOIN,       /* join sent, waiting for the reply (in flight) */
    CL_READY,      /* open (idle) or member of its room (chat modes) */
    CL_CLOSING,    /* we started the close handshake at the end */
    CL_DEAD,       /* connection gone */
};

/* What one publisher sent: indexed by its message counter. */
typedef struct pub {
    uint64_t n;        /* messages sent */
    uint64_t cap;      /* allocated entries */
    uint64_t *sent_ns; /* send time, for ack latency */
    uint32_t *count;   /* deliveries to members other than the publisher */
    uint8_t *acked;    /* 0 no reply yet, 1 ok, 2 rejected */
} pub_t;

typedef struct client {
    pl_wsclient_t *ws;
    int idx;
    int room; /* room index (chat modes) */
    int slot; /* position among the room's members */
    enum client_state state;
    int inflight;      /* unacknowledged sends */
    pub_t *pub;        /* NULL unless this member publishes */
    uint64_t *last;    /* per room slot: highest counter + 1 seen from it */
    uint64_t start_ns; /* launch time, for handshake latency */
    uint64_t got;      /* deliveries received (other members' messages) */
    uint64_t events;   /* other events received */
    uint64_t ooo;      /* out-of-order deliveries received */
    /* history mode: the one request outstanding (inflight 0 or 1) */
    uint64_t req_ns;        /* when it was sent */
    int64_t req_before;     /* its before (0: none) */
    uint64_t req_id;        /* its id */
    struct event *think_ev; /* pause before the next request (--think) */
} client_t;

typedef struct room {
    int first; /* index of its first member (members are contiguous) */
    int size;  /* members */
    int ready; /* members that joined */
} room_t;

/* Log-bucketed histogram: exact below 64, then 32 sub-buckets per power of
 * two (about 3% relative error), values in microseconds. */
#define HIST_BUCKETS (64 + 58 * 32)
typedef struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t n;
    uint64_t max;
} hist_t;

static struct {
    enum mode mode;
    pl_wsclient_target_t *targets;
    int ntargets;
    int conns;    /* idle: -n */
    int inflight; /* concurrent handshakes (+ auth/join) */
    int hold;     /* idle: seconds */
    int auth;     /* idle: authenticate after the upgrade */
    const char *secret;
    int src_ips; /* rotate over 127.0.0.2 .. 127.0.0.(1+N); 0 = no bind */
    int members, publishers, window, duration;
    int rooms, per_room;
    double rate;
    int size; /* pad message text to this many bytes */
    const char *ready_file;
    char room_prefix[64];
    int setup_timeout, drain, connect_timeout;
    int start_delay;              /* seconds between setup and the first send */
    uint64_t messages;            /* fanout: stop after this many sends (0 = no cap) */
    int64_t before_lo, before_hi; /* history: before drawn from [lo, hi]; 0 = none */
    int limit;                    /* history: page size */
    int think_ms;                 /* history: pause between reply and next request */
    int verbose;
} opt = {
    .conns = 1000,
    .inflight = 500,
    .hold = 10,
    .members = 1000,
    .publishers = 10,
    .window = 64,
    .duration = 10,
    .rooms = 500,
    .per_room = 10,
    .rate = 5000,
    .setup_timeout = 120,
    .drain = 5,
    .connect_timeout = 10000,
    .limit = 50,
};

static struct {
    uint64_t launched, opened, ready, connect_fail, handshake_fail, auth_fail, join_fail;
    uint64_t setup_fail_other; /* died in setup for another reason */
    uint64_t died;             /* ready connection lost before we closed it */
    uint64_t protocol_err, bad_json, unknown, other_events, foreign, cross_room;
    uint64_t sent, acked, rejected, window_full;
    uint64_t deliveries, deliveries_window, self_deliveries, out_of_order;
    uint64_t last_delivery_ns;
    char first_reject[64];
    char first_death[96];
    /* history mode */
    uint64_t h_sent, h_ok, h_rejected, h_in_window, h_bad_page, h_empty, h_msgs;
    char first_bad_page[128];
} st;

static struct event_base *base;
static client_t *clients;
static int nclients;
static room_t *rooms;
static int nrooms;
static int next_launch, in_setup;
static uint64_t t_setup_start, t_setup_end, t_send_start, t_send_end, t_last_ready;
static int sending;
static int rr_next; /* rooms mode: next member to publish */
static uint64_t paced;
static hist_t lat_hist, ack_hist, hs_hist;
static struct event *tick_ev, *phase_ev, *deadline_ev;
static int closing_all, exit_code;
static int live; /* connections not yet ended */

/* CPU seconds this process has used (user + system). */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ---- */

static int hist_index(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 6 */
    int idx = 64 + (e - 6) * 32 + (int)((v >> (e - 5)) - 32);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t hist_upper(int idx)
{
    if (idx < 64)
        return (uint64_t)idx;
    int e = (idx - 64) / 32 + 6;
    uint64_t sub = (uint64_t)((idx - 64) % 32 + 32);
    return ((sub + 1) << (e - 5)) - 1;
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* Upper bound of the bucket holding the q-quantile (0 if empty). */
static uint64_t hist_pct(const hist_t *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->n);
    if (want >= h->n)
        want = h->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---- setup ---- */

static void launch_more(void);
static void setup_done(void);
static void on_send_end(evutil_socket_t fd, short what, void *arg);
static int send_one(client_t *cl);

static char *make_token(int idx)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        abort();
    char sub[64];
    snprintf(sub, sizeof(sub), "bench%d-%d", (int)getpid(), idx);
    time_t now = time(NULL);
    jwt_add_grant(jwt, "sub", sub);
    jwt_add_grant(jwt, "name", sub);
    jwt_add_grant_int(jwt, "iat", (long)now);
    jwt_add_grant_int(jwt, "exp", (long)now + 3600);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)opt.secret, (int)strlen(opt.secret));
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!tok)
        abort();
    return tok;
}

static void send_json(client_t *cl, const char *buf, int n)
{
    pl_wsclient_send(cl->ws, PL_WS_TEXT, buf, (size_t)n);
}

static void room_name(int room, char *out, size_t n)
{
    if (opt.mode != MODE_ROOMS)
        snprintf(out, n, "%s", opt.room_prefix);
    else
        snprintf(out, n, "%s-%d", opt.room_prefix, room);
}

/* A connection left the handshake/auth/join phase (either way). */
static void setup_step_done(client_t *cl, int ok)
{
    in_setup--;
    if (ok) {
        cl->state = CL_READY;
        st.ready++;
        t_last_ready = mono_ns();
        if (nrooms > 0)
            rooms[cl->room].ready++;
    }
    if (!t_setup_end)
        launch_more();
}

static void on_open(pl_wsclient_t *ws, void *arg)
{
    client_t *cl = arg;
    st.opened++;
    hist_add(&hs_hist, (mono_ns() - cl->start_ns) / 1000);
    if (opt.mode == MODE_IDLE && !opt.auth) {
        setup_step_done(cl, 1);
        return;
    }
    char *tok = make_token(cl->idx);
    char buf[2048];
    int n =
        snprintf(buf, sizeof(buf), "{\"op\":\"auth\",\"id\":%d,\"token\":\"%s\"}", ID_AUTH, tok);
    free(tok);
    cl->state = CL_AUTH;
    send_json(cl, buf, n);
}

static void note_death(client_t *cl, const char *what, enum pl_wsclient_end why, int code)
{
    if (st.first_death[0])
        return;
    snprintf(st.first_death, sizeof(st.first_death), "conn%d:%s:%s:%d", cl->idx, what,
             pl_wsclient_end_name(why), code);
}

static void on_close(pl_wsclient_t *ws, void *arg, enum pl_wsclient_end why, int code)
{
    client_t *cl = arg;
    enum client_state was = cl->state;
    cl->state = CL_DEAD;
    cl->ws = NULL;
    live--;
    if (closing_all && live == 0)
        event_base_loopbreak(base);
    if (why == WSC_END_PROTOCOL)
        st.protocol_err++;
    switch (was) {
    case CL_CONNECTING:
        if (why == WSC_END_CONNECT)
            st.connect_fail++;
        else if (why == WSC_END_HANDSHAKE)
            st.handshake_fail++;
        else
            st.setup_fail_other++;
        note_death(cl, "setup", why, code);
        setup_step_done(cl, 0);
        break;
    case CL_AUTH:
    case CL_JOIN:
        st.setup_fail_other++;
        note_death(cl, was == CL_AUTH ? "auth" : "join", why, code);
        setup_step_done(cl, 0);
        break;
    case CL_READY:
        st.died++;
        note_death(cl, "ready", why, code);
        if (nrooms > 0)
            rooms[cl->room].ready--;
        break;
    default:
        break;
    }
    if (opt.verbose)
        fprintf(stderr, "conn %d closed: %s code=%d\n", cl->idx, pl_wsclient_end_name(why), code);
}

/* ---- chat traffic ---- */

static void pub_grow(pub_t *p)
{
    if (p->n < p->cap)
        return;
    uint64_t cap = p->cap ? p->cap * 2 : 256;
    p->sent_ns = pl_xrealloc(p->sent_ns, cap * sizeof(*p->sent_ns));
    p->count = pl_xrealloc(p->count, cap * sizeof(*p->count));
    p->acked = pl_xrealloc(p->acked, cap * sizeof(*p->acked));
    memset(p->count + p->cap, 0, (cap - p->cap) * sizeof(*p->count));
    memset(p->acked + p->cap, 0, (cap - p->cap) * sizeof(*p->acked));
    p->cap = cap;
}

/* Sends the publisher's next message; 0 when the --messages cap is
 * reached or the connection refused it. */
static int send_one(client_t *cl)
{
    if (opt.messages && st.sent >= opt.messages)
        return 0;
    pub_t *p = cl->pub;
    pub_grow(p);
    uint64_t ctr = p->n;
    uint64_t now = mono_ns();
    char text[4096];
    int tl = snprintf(text, sizeof(text), "PLB:%d:%" PRIu64 ":%" PRIu64, cl->idx, ctr, now);
    if (opt.size > tl) {
        int pad = opt.size < (int)sizeof(text) - 1 ? opt.size : (int)sizeof(text) - 1;
        text[tl++] = ':';
        while (tl < pad)
            text[tl++] = 'x';
        text[tl] = '\0';
    }
    char room[96];
    room_name(cl->room, room, sizeof(room));
    char buf[4096 + 256];
    int n = snprintf(buf, sizeof(buf),
                     "{\"op\":\"send\",\"id\":%" PRIu64 ",\"room\":\"%s\",\"text\":\"%s\"}",
                     SEND_ID_BASE + ctr, room, text);
    if (pl_wsclient_send(cl->ws, PL_WS_TEXT, buf, (size_t)n) < 0)
        return 0;
    p->sent_ns[ctr] = now;
    p->n++;
    cl->inflight++;
    st.sent++;
    return 1;
}

static void handle_delivery(client_t *cl, const char *s, const char *end)
{
    char *e;
    long pubidx = strtol(s, &e, 10);
    if (e >= end || *e != ':' || pubidx < 0 || pubidx >= nclients) {
        st.foreign++;
        return;
    }
    uint64_t ctr = strtoull(e + 1, &e, 10);
    if (e >= end || *e != ':') {
        st.foreign++;
        return;
    }
    uint64_t ts = strtoull(e + 1, &e, 10);
    client_t *from = &clients[pubidx];
    if (!from->pub || ctr >= from->pub->n) {
        st.foreign++;
        return;
    }
    if (from == cl) {
        st.self_deliveries++;
        return;
    }
    if (from->room != cl->room) {
        st.cross_room++;
        return;
    }
    uint64_t now = mono_ns();
    hist_add(&lat_hist, now > ts ? (now - ts) / 1000 : 0);
    st.deliveries++;
    if (sending)
        st.deliveries_window++;
    st.last_delivery_ns = now;
    from->pub->count[ctr]++;
    cl->got++;
    uint64_t *last = &cl->last[from->slot];
    if (ctr + 1 <= *last) {
        st.out_of_order++;
        cl->ooo++;
        if (opt.verbose && st.out_of_order <= 20)
            fprintf(stderr,
                    "out of order: member %d (url %d) got %d#%" PRIu64 " after %d#%" PRIu64
                    " (publisher on url %d), %.3f s into sending\n",
                    cl->idx, cl->idx % opt.ntargets, from->idx, ctr, from->idx, *last - 1,
                    from->idx % opt.ntargets, (double)(now - t_send_start) / 1e9);
    } else {
        *last = ctr + 1;
    }
}

static void handle_reply(client_t *cl, json_int_t id, json_t *j)
{
    int ok = json_is_true(json_object_get(j, "ok"));
    if (id == ID_AUTH && cl->state == CL_AUTH) {
        if (!ok) {
            st.auth_fail++;
            cl->state = CL_CLOSING;
            setup_step_done(cl, 0);
            pl_wsclient_close(cl->ws, 1000, 2000);
            return;
        }
        if (opt.mode == MODE_IDLE || opt.mode == MODE_HISTORY) {
            setup_step_done(cl, 1);
            return;
        }
        char room[96], buf[256];
        room_name(cl->room, room, sizeof(room));
        int n = snprintf(buf, sizeof(buf), "{\"op\":\"join\",\"id\":%d,\"room\":\"%s\"}", ID_JOIN,
                         room);
        cl->state = CL_JOIN;
        send_json(cl, buf, n);
        return;
    }
    if (id == ID_JOIN && cl->state == CL_JOIN) {
        if (!ok) {
            st.join_fail++;
            cl->state = CL_CLOSING;
            setup_step_done(cl, 0);
            pl_wsclient_close(cl->ws, 1000, 2000);
            return;
        }
        setup_step_done(cl, 1);
        return;
    }
    if (id >= SEND_ID_BASE && cl->pub && (uint64_t)(id - SEND_ID_BASE) < cl->pub->n) {
        uint64_t ctr = (uint64_t)(id - SEND_ID_BASE);
        if (cl->pub->acked[ctr]) {
            st.unknown++;
            return;
        }
        cl->inflight--;
        if (ok) {
            cl->pub->acked[ctr] = 1;
            st.acked++;
            hist_add(&ack_hist, (mono_ns() - cl->pub->sent_ns[ctr]) / 1000);
        } else {
            cl->pub->acked[ctr] = 2;
            st.rejected++;
            if (!st.first_reject[0]) {
                const char *err = json_string_value(json_object_get(j, "error"));
                snprintf(st.first_reject, sizeof(st.first_reject), "%s", err ? err : "?");
            }
        }
        if (sending && opt.mode == MODE_FANOUT && cl->state == CL_READY)
            while (cl->inflight < opt.window && send_one(cl))
                ;
        /* --messages: the send phase is over once every one is answered */
        if (sending && opt.messages && st.acked + st.rejected >= opt.messages)
            on_send_end(-1, 0, NULL);
        return;
    }
    st.unknown++;
}

/* ---- history mode ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Decimal digits at *s (not NUL-terminated: stops at end); -1 if none. */
static int64_t scan_int(const char **s, const char *end)
{
    const char *p = *s;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < INT64_MAX / 10)
        v = v * 10 + (*p++ - '0');
    if (p == *s)
        return -1;
    *s = p;
    return v;
}

static void send_history(client_t *cl)
{
    int64_t before = 0;
    if (opt.before_hi > 0)
        before = opt.before_lo + (int64_t)(rng() % (uint64_t)(opt.before_hi - opt.before_lo + 1));
    char room[96], buf[384];
    room_name(0, room, sizeof(room));
    uint64_t id = SEND_ID_BASE + st.h_sent;
    int n;
    if (before > 0)
        n = snprintf(buf, sizeof(buf),
                     "{\"op\":\"history\",\"id\":%" PRIu64 ",\"room\":\"%s\",\"before\":%" PRId64
                     ",\"limit\":%d}",
                     id, room, before, opt.limit);
    else
        n = snprintf(buf, sizeof(buf),
                     "{\"op\":\"history\",\"id\":%" PRIu64 ",\"room\":\"%s\",\"limit\":%d}", id,
                     room, opt.limit);
    cl->req_ns = mono_ns();
    if (pl_wsclient_send(cl->ws, PL_WS_TEXT, buf, (size_t)n) < 0)
        return;
    cl->req_before = before;
    cl->req_id = id;
    cl->inflight = 1;
    st.h_sent++;
}

static void on_think(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    if (sending && cl->state == CL_READY && !cl->inflight)
        send_history(cl);
}

/* Schedules the reader's next request after a think time drawn uniformly
 * from [0, 2 x --think) (mean --think), the first one from [0, --think).
 * Fixed pauses would keep the readers in step: all N requests would arrive
 * together every --think ms and queue behind each other. */
static void think(client_t *cl, int first)
{
    uint64_t us = rng() % ((uint64_t)opt.think_ms * (first ? 1000 : 2000));
    if (!cl->think_ev)
        cl->think_ev = evtimer_new(base, on_think, cl);
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    evtimer_add(cl->think_ev, &tv);
}

/* An ok page must hold min(limit, before - 1) messages (limit without
 * before), seqs consecutive, the last one before - 1. Each stored event has
 * exactly one "seq": key (our texts carry no quotes), so scanning for it is
 * enough; no JSON parse per reply, the generator shares the CPUs. */
static void check_page(client_t *cl, const char *p, const char *end)
{
    static const char key[] = "\"seq\":";
    int64_t want = opt.limit;
    if (cl->req_before > 0 && cl->req_before - 1 < want)
        want = cl->req_before - 1;
    int64_t k = 0, first = -1, prev = -1;
    int gap = 0;
    const char *q = p;
    while ((q = memmem(q, (size_t)(end - q), key, sizeof(key) - 1)) != NULL) {
        q += sizeof(key) - 1;
        int64_t seq = scan_int(&q, end);
        if (k == 0)
            first = seq;
        else if (seq != prev + 1)
            gap = 1;
        prev = seq;
        k++;
    }
    st.h_msgs += (uint64_t)k;
    if (k == want && !gap && (cl->req_before <= 0 || prev == cl->req_before - 1))
        return;
    st.h_bad_page++;
    if (k == 0)
        st.h_empty++;
    if (!st.first_bad_page[0])
        snprintf(st.first_bad_page, sizeof(st.first_bad_page),
                 "before=%" PRId64 ":got_%" PRId64 "_of_%" PRId64 "_seq_%" PRId64 "..%" PRId64 "%s",
                 cl->req_before, k, want, first, prev, gap ? "_gap" : "");
}

static void on_history_reply(client_t *cl, const char *p, size_t n)
{
    const char *end = p + n, *q = p + 6;
    int64_t id = n > 6 && memcmp(p, "{\"id\":", 6) == 0 ? scan_int(&q, end) : -1;
    if (!cl->inflight || id < 0 || (uint64_t)id != cl->req_id) {
        st.unknown++;
        return;
    }
    uint64_t now = mono_ns();
    cl->inflight = 0;
    static const char ok[] = ",\"ok\":true,";
    if ((size_t)(end - q) > sizeof(ok) - 1 && memcmp(q, ok, sizeof(ok) - 1) == 0) {
        st.h_ok++;
        hist_add(&lat_hist, (now - cl->req_ns) / 1000);
        check_page(cl, q, end);
    } else {
        st.h_rejected++;
        if (!st.first_reject[0]) {
            json_t *j = json_loadb(p, n, 0, NULL);
            const char *err = j ? json_string_value(json_object_get(j, "error")) : NULL;
            snprintf(st.first_reject, sizeof(st.first_reject), "%s", err ? err : "?");
            json_decref(j);
        }
    }
    if (sending)
        st.h_in_window++;
    if (!sending || cl->state != CL_READY)
        return;
    if (opt.think_ms > 0)
        think(cl, 0);
    else
        send_history(cl);
}

static void on_message(pl_wsclient_t *ws, void *arg, int opcode, const uint8_t *p, size_t n)
{
    client_t *cl = arg;
    if (opt.mode == MODE_HISTORY && cl->state != CL_AUTH) {
        on_history_reply(cl, (const char *)p, n);
        return;
    }
    /* Fast path for deliveries: our texts need no JSON escaping. */
    static const char mark[] = "\"text\":\"PLB:";
    const char *m = memmem(p, n, mark, sizeof(mark) - 1);
    if (m) {
        handle_delivery(cl, m + sizeof(mark) - 1, (const char *)p + n);
        return;
    }
    /* Other events (presence on every join: O(members^2) while a big
     * room fills up) are only counted, without parsing. */
    static const char evmark[] = "{\"ev\":\"";
    if (n > sizeof(evmark) && memcmp(p, evmark, sizeof(evmark) - 1) == 0 &&
        memcmp(p + sizeof(evmark) - 1, "msg\"", 4) != 0) {
        st.other_events++;
        cl->events++;
        return;
    }
    json_error_t err;
    json_t *j = json_loadb((const char *)p, n, 0, &err);
    if (!j) {
        st.bad_json++;
        return;
    }
    json_t *id = json_object_get(j, "id");
    const char *ev = json_string_value(json_object_get(j, "ev"));
    if (json_is_integer(id)) {
        handle_reply(cl, json_integer_value(id), j);
    } else if (json_is_string(json_object_get(j, "text"))) {
        /* A delivery the fast path missed (other spacing or escaping). */
        const char *text = json_string_value(json_object_get(j, "text"));
        if (strncmp(text, "PLB:", 4) == 0)
            handle_delivery(cl, text + 4, text + strlen(text));
        else
            st.foreign++;
    } else if (ev || json_object_get(j, "type")) {
        st.other_events++;
    } else {
        st.unknown++;
    }
    json_decref(j);
}

static const pl_wsclient_cbs_t cbs = {on_open, on_message, on_close};

static void launch(client_t *cl)
{
    const pl_wsclient_target_t *t = &opt.targets[cl->idx % opt.ntargets];
    struct sockaddr_in src, *srcp = NULL;
    if (opt.src_ips > 0) {
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(cl->idx % opt.src_ips));
        srcp = &src;
    }
    cl->start_ns = mono_ns();
    cl->state = CL_CONNECTING;
    st.launched++;
    in_setup++;
    cl->ws = pl_wsclient_connect(base, t, srcp, opt.connect_timeout, &cbs, cl);
    if (!cl->ws) {
        if (opt.verbose)
            fprintf(stderr, "conn %d: socket/connect failed: %s\n", cl->idx, strerror(errno));
        st.connect_fail++;
        cl->state = CL_DEAD;
        in_setup--;
        return;
    }
    live++;
}

static void launch_more(void)
{
    static int busy;
    if (busy)
        return; /* a synchronous failure inside launch() re-entered us */
    busy = 1;
    while (in_setup < opt.inflight && next_launch < nclients)
        launch(&clients[next_launch++]);
    busy = 0;
    if (next_launch == nclients && in_setup == 0 && !t_setup_end)
        setup_done();
}

/* ---- phases ---- */

static void report_and_close(void);

static void close_all(void)
{
    closing_all = 1;
    for (int i = 0; i < nclients; i++) {
        client_t *cl = &clients[i];
        if (cl->ws && cl->state != CL_DEAD) {
            cl->state = CL_CLOSING;
            pl_wsclient_close(cl->ws, 1000, 2000);
        }
    }
    if (live == 0) {
        event_base_loopbreak(base);
        return;
    }
    struct timeval tv = {3, 0};
    event_base_loopexit(base, &tv);
}

static int count_open(void)
{
    int n = 0;
    for (int i = 0; i < nclients; i++)
        n += clients[i].state == CL_READY;
    return n;
}

static void on_hold_end(evutil_socket_t fd, short what, void *arg)
{
    int open = count_open();
    uint64_t failed = st.launched - st.ready + (nclients - st.launched);
    printf("hold over: open=%d failed=%" PRIu64 " died_during_hold=%" PRIu64 "\n", open, failed,
           st.died);
    double secs = (double)(t_last_ready - t_setup_start) / 1e9;
    printf("RESULT mode=idle conns=%d opened=%" PRIu64 " ready=%" PRIu64 " failed=%" PRIu64
           " open_at_end=%d died=%" PRIu64 " handshakes_per_s=%.0f setup_s=%.3f"
           " hs_p50_us=%" PRIu64 " hs_p99_us=%" PRIu64 " hs_max_us=%" PRIu64
           " connect_fail=%" PRIu64 " handshake_fail=%" PRIu64 " auth_fail=%" PRIu64
           " gen_cpu_s=%.2f first_death=%s\n",
           nclients, st.opened, st.ready, failed, open, st.died,
           secs > 0 ? (double)st.ready / secs : 0.0, secs, hist_pct(&hs_hist, 0.5),
           hist_pct(&hs_hist, 0.99), hs_hist.max, st.connect_fail, st.handshake_fail, st.auth_fail,
           self_cpu_s(), st.first_death[0] ? st.first_death : "-");
    fflush(stdout);
    if (open != nclients)
        exit_code = 1;
    close_all();
}

static int settled(void)
{
    for (int i = 0; i < nclients; i++)
        if (clients[i].inflight > 0 && clients[i].state == CL_READY)
            return 0;
    if (opt.mode == MODE_HISTORY)
        return 1;
    return mono_ns() - st.last_delivery_ns > 300000000u;
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    if (settled() || mono_ns() - t_send_end > (uint64_t)opt.drain * 1000000000u) {
        event_del(phase_ev);
        report_and_close();
    }
}

static void on_send_end(evutil_socket_t fd, short what, void *arg)
{
    sending = 0;
    t_send_end = mono_ns();
    if (tick_ev)
        event_del(tick_ev);
    event_free(phase_ev);
    phase_ev = event_new(base, -1, EV_PERSIST, on_drain_check, NULL);
    struct timeval tv = {0, 100000};
    event_add(phase_ev, &tv);
}

/* rooms mode: every millisecond, issue the sends that are due. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    if (!sending)
        return;
    double elapsed = (double)(mono_ns() - t_send_start) / 1e9;
    uint64_t due = (uint64_t)(elapsed * opt.rate);
    int tries = 0;
    while (paced < due && tries < nclients) {
        client_t *cl = &clients[rr_next];
        rr_next = (rr_next + 1) % nclients;
        tries++;
        if (cl->state != CL_READY || !cl->pub)
            continue;
        paced++;
        if (cl->inflight >= opt.window)
            st.window_full++;
        else
            send_one(cl);
    }
}

static void start_sending(void)
{
    sending = 1;
    t_send_start = mono_ns();
    st.last_delivery_ns = t_send_start;
    if (opt.mode == MODE_HISTORY) {
        for (int i = 0; i < nclients; i++)
            if (clients[i].state == CL_READY) {
                if (opt.think_ms > 0)
                    think(&clients[i], 1);
                else
                    send_history(&clients[i]);
            }
    } else if (opt.mode == MODE_FANOUT) {
        for (int i = 0; i < nclients; i++)
            if (clients[i].pub && clients[i].state == CL_READY)
                while (clients[i].inflight < opt.window && send_one(&clients[i]))
                    ;
    } else {
        tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
        struct timeval tv = {0, 1000};
        event_add(tick_ev, &tv);
    }
    phase_ev = evtimer_new(base, on_send_end, NULL);
    struct timeval tv = {opt.duration, 0};
    evtimer_add(phase_ev, &tv);
}

static void on_start_delay(evutil_socket_t fd, short what, void *arg)
{
    event_free(phase_ev);
    phase_ev = NULL;
    start_sending();
}

static void setup_done(void)
{
    t_setup_end = mono_ns();
    if (phase_ev) {
        event_free(phase_ev);
        phase_ev = NULL;
    }
    double secs = (double)((t_last_ready ? t_last_ready : t_setup_end) - t_setup_start) / 1e9;
    printf("setup: %" PRIu64 "/%d ready in %.3f s (%.0f/s), handshake p50=%" PRIu64
           "us p99=%" PRIu64 "us; failed: connect=%" PRIu64 " handshake=%" PRIu64 " auth=%" PRIu64
           " join=%" PRIu64 " other=%" PRIu64 "\n",
           st.ready, nclients, secs, secs > 0 ? (double)st.ready / secs : 0.0,
           hist_pct(&hs_hist, 0.5), hist_pct(&hs_hist, 0.99), st.connect_fail, st.handshake_fail,
           st.auth_fail, st.join_fail, st.setup_fail_other);
    fflush(stdout);
    if (opt.ready_file) {
        FILE *f = fopen(opt.ready_file, "w");
        if (f) {
            fprintf(f, "ready=%" PRIu64 "\n", st.ready);
            fclose(f);
        }
    }
    if (opt.mode == MODE_IDLE) {
        phase_ev = evtimer_new(base, on_hold_end, NULL);
        struct timeval tv = {opt.hold, 0};
        evtimer_add(phase_ev, &tv);
        return;
    }
    if (st.ready == 0) {
        fprintf(stderr, "parley-load: no connection joined; first failure: %s\n",
                st.first_death[0] ? st.first_death : "-");
        exit_code = 1;
        report_and_close();
        return;
    }
    if (opt.start_delay > 0) {
        phase_ev = evtimer_new(base, on_start_delay, NULL);
        struct timeval tv = {opt.start_delay, 0};
        evtimer_add(phase_ev, &tv);
        return;
    }
    start_sending();
}

static void on_setup_timeout(evutil_socket_t fd, short what, void *arg)
{
    fprintf(stderr, "parley-load: setup timed out after %d s with %d still in flight\n",
            opt.setup_timeout, in_setup);
    exit_code = 1;
    next_launch = nclients; /* launch no more */
    setup_done();
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    fprintf(stderr, "parley-load: hard deadline reached, exiting\n");
    fflush(stdout);
    _exit(3);
}

static void report_history(void)
{
    uint64_t unanswered = 0;
    for (int i = 0; i < nclients; i++)
        unanswered += (uint64_t)clients[i].inflight;
    double secs = (double)(t_send_end - t_send_start) / 1e9;
    double rate = secs > 0 ? (double)st.h_in_window / secs : 0;
    uint64_t errors = st.connect_fail + st.handshake_fail + st.auth_fail + st.setup_fail_other +
                      st.died + st.protocol_err + st.bad_json + st.h_rejected + unanswered +
                      st.h_bad_page;
    char room[96];
    room_name(0, room, sizeof(room));
    printf("history: room=%s before=%" PRId64 "..%" PRId64 " limit=%d think=%dms\n", room,
           opt.before_lo, opt.before_hi, opt.limit, opt.think_ms);
    printf(
        "requests=%" PRIu64 " ok=%" PRIu64 " rejected=%" PRIu64 " (first: %s) unanswered=%" PRIu64
        " bad_pages=%" PRIu64 " (empty %" PRIu64 ", first: %s) messages=%" PRIu64 "\n",
        st.h_sent, st.h_ok, st.h_rejected, st.first_reject[0] ? st.first_reject : "-", unanswered,
        st.h_bad_page, st.h_empty, st.first_bad_page[0] ? st.first_bad_page : "-", st.h_msgs);
    printf("latency request->ok reply: p50=%.3fms p90=%.3fms p99=%.3fms p99.9=%.3fms max=%.3fms; "
           "%.0f replies/s over the %.1f s window\n",
           hist_pct(&lat_hist, 0.5) / 1e3, hist_pct(&lat_hist, 0.9) / 1e3,
           hist_pct(&lat_hist, 0.99) / 1e3, hist_pct(&lat_hist, 0.999) / 1e3, lat_hist.max / 1e3,
           rate, secs);
    printf("errors=%" PRIu64 " died=%" PRIu64 " protocol=%" PRIu64 " bad_json=%" PRIu64
           " unknown=%" PRIu64 " first_death=%s\n",
           errors, st.died, st.protocol_err, st.bad_json, st.unknown,
           st.first_death[0] ? st.first_death : "-");
    printf("RESULT mode=history conns=%d ready=%" PRIu64 " before_lo=%" PRId64 " before_hi=%" PRId64
           " limit=%d think_ms=%d requests=%" PRIu64 " ok=%" PRIu64 " rejected=%" PRIu64
           " unanswered=%" PRIu64 " bad_pages=%" PRIu64 " empty_pages=%" PRIu64 " req_per_s=%.0f"
           " lat_p50_us=%" PRIu64 " lat_p90_us=%" PRIu64 " lat_p99_us=%" PRIu64
           " lat_p999_us=%" PRIu64 " lat_max_us=%" PRIu64 " errors=%" PRIu64 " died=%" PRIu64
           " send_window_s=%.3f gen_cpu_s=%.2f\n",
           nclients, st.ready, opt.before_lo, opt.before_hi, opt.limit, opt.think_ms, st.h_sent,
           st.h_ok, st.h_rejected, unanswered, st.h_bad_page, st.h_empty, rate,
           hist_pct(&lat_hist, 0.5), hist_pct(&lat_hist, 0.9), hist_pct(&lat_hist, 0.99),
           hist_pct(&lat_hist, 0.999), lat_hist.max, errors, st.died, secs, self_cpu_s());
    fflush(stdout);
    if (errors)
        exit_code = 1;
    close_all();
}

static void report_and_close(void)
{
    if (opt.mode == MODE_HISTORY) {
        report_history();
        return;
    }
    uint64_t expected = 0, loss = 0, dup = 0, unacked_deliv = 0, unacked = 0;
    for (int i = 0; i < nclients; i++) {
        pub_t *p = clients[i].pub;
        if (!p)
            continue;
        /* Every member of the room that joined, except the publisher. */
        uint32_t per =
            (uint32_t)(rooms[clients[i].room].ready - (clients[i].state == CL_READY ? 1 : 0));
        for (uint64_t c = 0; c < p->n; c++) {
            if (p->acked[c] == 1) {
                expected += per;
                if (p->count[c] < per)
                    loss += per - p->count[c];
                else
                    dup += p->count[c] - per;
            } else {
                unacked_deliv += p->count[c];
                unacked += p->acked[c] == 0;
            }
        }
    }
    /* Which receivers fell short: a stalled connection shows up here. */
    uint64_t *room_acked = pl_xcalloc((size_t)nrooms, sizeof(*room_acked));
    for (int i = 0; i < nclients; i++)
        if (clients[i].pub)
            for (uint64_t c = 0; c < clients[i].pub->n; c++)
                room_acked[clients[i].room] += clients[i].pub->acked[c] == 1;
    int shown = 0, short_members = 0;
    for (int i = 0; i < nclients; i++) {
        client_t *cl = &clients[i];
        if (cl->state != CL_READY)
            continue;
        uint64_t own = 0;
        if (cl->pub)
            for (uint64_t c = 0; c < cl->pub->n; c++)
                own += cl->pub->acked[c] == 1;
        uint64_t want = room_acked[cl->room] - own;
        if (cl->got >= want)
            continue;
        short_members++;
        if (shown++ < 5)
            printf("short: member %d (url %d, room %d) got %" PRIu64 " of %" PRIu64
                   " messages, %" PRIu64 " other events, %zu bytes unsent\n",
                   i, i % opt.ntargets, cl->room, cl->got, want, cl->events,
                   cl->ws ? pl_wsclient_pending(cl->ws) : (size_t)0);
    }
    free(room_acked);
    if (short_members)
        printf("short: %d member(s) received fewer messages than expected\n", short_members);
    double secs = (double)(t_send_end - t_send_start) / 1e9;
    double rate = secs > 0 ? (double)st.deliveries_window / secs : 0;
    uint64_t errors = st.connect_fail + st.handshake_fail + st.auth_fail + st.join_fail +
                      st.setup_fail_other + st.died + st.protocol_err + st.rejected + st.bad_json +
                      st.cross_room + unacked;
    if (unacked) {
        /* Sends never answered: say where their publishers were connected. */
        printf("unacked by url:");
        for (int u = 0; u < opt.ntargets; u++) {
            uint64_t n = 0, conns = 0;
            for (int i = u; i < nclients; i += opt.ntargets) {
                client_t *cl = &clients[i];
                uint64_t mine = 0;
                for (uint64_t c = 0; cl->pub && c < cl->pub->n; c++)
                    mine += cl->pub->acked[c] == 0;
                n += mine;
                conns += mine > 0;
            }
            printf(" %s=%" PRIu64 " (%" PRIu64 " conns)", opt.targets[u].host, n, conns);
        }
        printf("\n");
    }
    printf("sent=%" PRIu64 " acked=%" PRIu64 " rejected=%" PRIu64 " unacked=%" PRIu64
           " (first rejection: %s)\n",
           st.sent, st.acked, st.rejected, unacked, st.first_reject[0] ? st.first_reject : "-");
    printf("deliveries=%" PRIu64 " (%.0f/s over the %.1f s send window) expected=%" PRIu64
           " loss=%" PRIu64 " duplicates=%" PRIu64 " out_of_order=%" PRIu64 "\n",
           st.deliveries, rate, secs, expected, loss, dup, st.out_of_order);
    printf("latency send->deliver: p50=%.3fms p99=%.3fms p99.9=%.3fms max=%.3fms; "
           "ack p50=%.3fms p99=%.3fms\n",
           hist_pct(&lat_hist, 0.5) / 1e3, hist_pct(&lat_hist, 0.99) / 1e3,
           hist_pct(&lat_hist, 0.999) / 1e3, lat_hist.max / 1e3, hist_pct(&ack_hist, 0.5) / 1e3,
           hist_pct(&ack_hist, 0.99) / 1e3);
    printf("errors=%" PRIu64 " died=%" PRIu64 " protocol=%" PRIu64 " bad_json=%" PRIu64
           " self_deliveries=%" PRIu64 " other_events=%" PRIu64 " unknown=%" PRIu64
           " foreign=%" PRIu64 " window_full=%" PRIu64 " first_death=%s\n",
           errors, st.died, st.protocol_err, st.bad_json, st.self_deliveries, st.other_events,
           st.unknown, st.foreign, st.window_full, st.first_death[0] ? st.first_death : "-");
    printf("RESULT mode=%s conns=%d ready=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64
           " rejected=%" PRIu64 " deliveries=%" PRIu64 " deliveries_per_s=%.0f"
           " expected=%" PRIu64 " loss=%" PRIu64 " dup=%" PRIu64 " ooo=%" PRIu64 " unacked=%" PRIu64
           " unacked_deliveries=%" PRIu64 " lat_p50_us=%" PRIu64 " lat_p99_us=%" PRIu64
           " lat_p999_us=%" PRIu64 " lat_max_us=%" PRIu64 " ack_p50_us=%" PRIu64
           " ack_p99_us=%" PRIu64 " errors=%" PRIu64 " died=%" PRIu64 " send_window_s=%.3f"
           " gen_cpu_s=%.2f\n",
           opt.mode == MODE_FANOUT ? "fanout" : "rooms", nclients, st.ready, st.sent, st.acked,
           st.rejected, st.deliveries, rate, expected, loss, dup, st.out_of_order, unacked,
           unacked_deliv, hist_pct(&lat_hist, 0.5), hist_pct(&lat_hist, 0.99),
           hist_pct(&lat_hist, 0.999), lat_hist.max, hist_pct(&ack_hist, 0.5),
           hist_pct(&ack_hist, 0.99), errors, st.died, secs, self_cpu_s());
    fflush(stdout);
    if (loss || errors)
        exit_code = 1;
    close_all();
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: parley-load MODE [options]\n"
               "modes:\n"
               "  idle     open -n connections, hold them --hold seconds\n"
               "  fanout   --members in one room, --publishers send with --window each\n"
               "  rooms    --rooms x --per-room members, --rate messages/s in total\n"
               "  history  -n readers (100) ask for history pages of one room in a closed loop\n"
               "options:\n"
               "  -u, --url LIST         comma-separated ws://IP:PORT/PATH (round-robin)\n"
               "  -n, --connections N    idle: connections (1000); history: readers (100)\n"
               "      --inflight N       concurrent handshakes incl. auth/join (500)\n"
               "      --hold S           idle: seconds to hold (10)\n"
               "      --auth             idle: authenticate after the upgrade\n"
               "  -s, --secret S         HS256 secret for the tokens (chat modes, --auth)\n"
               "      --src-ips N        bind to 127.0.0.2 .. 127.0.0.(N+1) in turn (0: no)\n"
               "  -m, --members M        fanout: members (1000)\n"
               "  -p, --publishers P     fanout: publishing members (10)\n"
               "  -w, --window W         unacknowledged sends per publisher (64)\n"
               "  -d, --duration S       seconds of sending (10)\n"
               "  -r, --rooms R          rooms mode: rooms (500)\n"
               "  -k, --per-room K       rooms mode: members per room (10)\n"
               "  -t, --rate T           rooms mode: messages/s in total (5000)\n"
               "      --size B           pad message text to B bytes\n"
               "      --room-prefix P    room name prefix (default bench<pid>)\n"
               "      --ready-file F     write F when setup is done\n"
               "      --setup-timeout S  give up waiting for setup (120)\n"
               "      --drain S          max seconds to wait for acks/deliveries (5)\n"
               "      --start-delay S    chat modes: wait S seconds after setup before sending\n"
               "      --messages N       fanout: stop after N sends in total (then drain)\n"
               "      --room R           fanout, history: the room (same as --room-prefix)\n"
               "      --before LO[:HI]   history: before drawn uniformly from [LO, HI]\n"
               "                         (default: none, the newest page)\n"
               "      --limit L          history: page size, 1-100 (50)\n"
               "      --think MS         history: pause after each reply, uniform in\n"
               "                         [0, 2 MS) (0: none, a closed loop)\n"
               "  -v, --verbose          log every connection end on stderr\n");
}

static void parse_urls(const char *list)
{
    char *dup = pl_xstrdup(list), *save = NULL;
    for (char *u = strtok_r(dup, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        opt.targets = pl_xrealloc(opt.targets, (opt.ntargets + 1) * sizeof(*opt.targets));
        if (pl_wsclient_parse_url(u, &opt.targets[opt.ntargets]) < 0) {
            fprintf(stderr, "parley-load: bad url %s (want ws://IPv4:PORT/PATH)\n", u);
            exit(2);
        }
        opt.ntargets++;
    }
    free(dup);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"connections", required_argument, NULL, 'n'},
        {"inflight", required_argument, NULL, 'I'},
        {"hold", required_argument, NULL, 'H'},
        {"auth", no_argument, NULL, 'A'},
        {"secret", required_argument, NULL, 's'},
        {"src-ips", required_argument, NULL, 'S'},
        {"members", required_argument, NULL, 'm'},
        {"publishers", required_argument, NULL, 'p'},
        {"window", required_argument, NULL, 'w'},
        {"duration", required_argument, NULL, 'd'},
        {"rooms", required_argument, NULL, 'r'},
        {"per-room", required_argument, NULL, 'k'},
        {"rate", required_argument, NULL, 't'},
        {"size", required_argument, NULL, 'B'},
        {"room-prefix", required_argument, NULL, 'P'},
        {"ready-file", required_argument, NULL, 'R'},
        {"setup-timeout", required_argument, NULL, 'T'},
        {"drain", required_argument, NULL, 'D'},
        {"start-delay", required_argument, NULL, 'W'},
        {"messages", required_argument, NULL, 'M'},
        {"room", required_argument, NULL, 'P'},
        {"before", required_argument, NULL, 'b'},
        {"limit", required_argument, NULL, 'l'},
        {"think", required_argument, NULL, 'K'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || argv[1][0] == '-') {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    if (strcmp(argv[1], "idle") == 0)
        opt.mode = MODE_IDLE;
    else if (strcmp(argv[1], "fanout") == 0)
        opt.mode = MODE_FANOUT;
    else if (strcmp(argv[1], "rooms") == 0)
        opt.mode = MODE_ROOMS;
    else if (strcmp(argv[1], "history") == 0) {
        opt.mode = MODE_HISTORY;
        opt.conns = 100;
    } else {
        usage(stderr);
        return 2;
    }
    const char *urls = "ws://127.0.0.1:8080/ws";
    snprintf(opt.room_prefix, sizeof(opt.room_prefix), "bench%d", (int)getpid());
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "u:n:s:m:p:w:d:r:k:t:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'u':
            urls = optarg;
            break;
        case 'n':
            opt.conns = atoi(optarg);
            break;
        case 'I':
            opt.inflight = atoi(optarg);
            break;
        case 'H':
            opt.hold = atoi(optarg);
            break;
        case 'A':
            opt.auth = 1;
            break;
        case 's':
            opt.secret = optarg;
            break;
        case 'S':
            opt.src_ips = atoi(optarg);
            break;
        case 'm':
            opt.members = atoi(optarg);
            break;
        case 'p':
            opt.publishers = atoi(optarg);
            break;
        case 'w':
            opt.window = atoi(optarg);
            break;
        case 'd':
            opt.duration = atoi(optarg);
            break;
        case 'r':
            opt.rooms = atoi(optarg);
            break;
        case 'k':
            opt.per_room = atoi(optarg);
            break;
        case 't':
            opt.rate = atof(optarg);
            break;
        case 'B':
            opt.size = atoi(optarg);
            break;
        case 'P':
            snprintf(opt.room_prefix, sizeof(opt.room_prefix), "%s", optarg);
            break;
        case 'R':
            opt.ready_file = optarg;
            break;
        case 'T':
            opt.setup_timeout = atoi(optarg);
            break;
        case 'D':
            opt.drain = atoi(optarg);
            break;
        case 'W':
            opt.start_delay = atoi(optarg);
            break;
        case 'M':
            opt.messages = strtoull(optarg, NULL, 10);
            break;
        case 'b': {
            char *e;
            opt.before_lo = opt.before_hi = strtoll(optarg, &e, 10);
            if (*e == ':')
                opt.before_hi = strtoll(e + 1, &e, 10);
            if (*e || opt.before_lo < 1 || opt.before_hi < opt.before_lo) {
                fprintf(stderr, "parley-load: --before wants LO[:HI], 1 <= LO <= HI\n");
                return 2;
            }
            break;
        }
        case 'l':
            opt.limit = atoi(optarg);
            break;
        case 'K':
            opt.think_ms = atoi(optarg);
            break;
        case 'v':
            opt.verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    parse_urls(urls);
    if ((opt.mode != MODE_IDLE || opt.auth) && !opt.secret) {
        fprintf(stderr, "parley-load: --secret is required to authenticate\n");
        return 2;
    }
    if (opt.inflight < 1 || opt.window < 1 || opt.duration < 1 || opt.src_ips < 0 ||
        opt.src_ips > 65000 || opt.size < 0 || opt.size > 4000 || opt.limit < 1 ||
        opt.limit > 100 || opt.think_ms < 0) {
        fprintf(stderr, "parley-load: option out of range\n");
        return 2;
    }

    if (opt.mode == MODE_IDLE || opt.mode == MODE_HISTORY) {
        nclients = opt.conns;
    } else if (opt.mode == MODE_FANOUT) {
        nclients = opt.members;
        nrooms = 1;
        if (opt.publishers > opt.members)
            opt.publishers = opt.members;
    } else {
        nrooms = opt.rooms;
        nclients = opt.rooms * opt.per_room;
    }
    if (nclients < 1 || nclients > 1000000) {
        fprintf(stderr, "parley-load: connection count out of range\n");
        return 2;
    }

    /* One descriptor per connection plus slack for libevent and stdio. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if ((rlim_t)nclients + 64 > rl.rlim_cur) {
            fprintf(stderr,
                    "parley-load: %d connections need more than the %llu descriptors allowed; "
                    "split the load over several processes\n",
                    nclients, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    clients = pl_xcalloc((size_t)nclients, sizeof(*clients));
    if (nrooms) {
        rooms = pl_xcalloc((size_t)nrooms, sizeof(*rooms));
        int per = opt.mode == MODE_FANOUT ? opt.members : opt.per_room;
        for (int r = 0; r < nrooms; r++) {
            rooms[r].first = r * per;
            rooms[r].size = per;
        }
    }
    for (int i = 0; i < nclients; i++) {
        client_t *cl = &clients[i];
        cl->idx = i;
        if (opt.mode == MODE_IDLE || opt.mode == MODE_HISTORY)
            continue;
        int per = opt.mode == MODE_FANOUT ? opt.members : opt.per_room;
        cl->room = i / per;
        cl->slot = i % per;
        cl->last = pl_xcalloc((size_t)per, sizeof(*cl->last));
        if (opt.mode == MODE_ROOMS || i < opt.publishers)
            cl->pub = pl_xcalloc(1, sizeof(*cl->pub));
    }

    base = event_base_new();
    struct timeval tv = {opt.setup_timeout, 0};
    phase_ev = evtimer_new(base, on_setup_timeout, NULL);
    evtimer_add(phase_ev, &tv);
    int run = opt.mode == MODE_IDLE ? opt.hold : opt.start_delay + opt.duration + opt.drain;
    struct timeval dl = {opt.setup_timeout + run + 30, 0};
    deadline_ev = evtimer_new(base, on_deadline, NULL);
    evtimer_add(deadline_ev, &dl);

    printf("parley-load %s: %d connections over %d url(s), %d handshakes in flight\n", argv[1],
           nclients, opt.ntargets, opt.inflight);
    fflush(stdout);
    t_setup_start = mono_ns();
    rng_state ^= t_setup_start ^ ((uint64_t)getpid() << 32);
    launch_more();
    event_base_dispatch(base);
    return exit_code;
}
