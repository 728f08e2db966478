/*
 * Redis connections of one worker (see bus.h). Two hiredis async contexts
 * on the worker's event base: cmd for commands and scripts, sub for
 * SUBSCRIBE. Each reconnects on its own with exponential backoff
 * (100 ms doubling to 2 s). The sub side keeps a table of wanted
 * channels and their state so that SUBSCRIBE and UNSUBSCRIBE for one
 * channel are never in flight together: hiredis 0.14 keys subscription
 * callbacks by channel name, and crossed replies would drop the callback
 * of a channel we still want.
 */
#include "bus.h"
#include "log.h"
#include "map.h"
#include "redis_url.h"
#include "util.h"

#include <inttypes.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

/* A command link with replies outstanding and none arriving for this long
 * is dropped (its callbacks get NULL, i.e. unavailable) and reconnected:
 * a hung Redis must not hang clients. */
#define STALL_MS 5000

enum chan_state {
    CH_NONE,      /* not subscribed, nothing in flight */
    CH_SUB_SENT,  /* SUBSCRIBE sent, waiting for its confirmation */
    CH_ACTIVE,    /* confirmed: messages flow */
    CH_UNSUB_SENT /* UNSUBSCRIBE sent, waiting for its confirmation */
};

typedef struct chan {
    int want; /* the owner wants this channel */
    enum chan_state st;
} chan_t;

typedef struct link {
    redisAsyncContext *ac; /* NULL while down */
    int up;                /* connected and usable */
    int attempts;          /* failed attempts since the last success (backoff) */
    struct event *retry;   /* reconnect timer */
} link_t;

struct pl_bus {
    struct event_base *base;
    pl_redis_url_t url; /* where to connect, AUTH and SELECT (common/redis_url.h) */
    char *control;      /* channel kept subscribed for the bus's lifetime */
    pl_bus_handlers_t h;
    link_t cmd, sub;
    pl_map_t chans; /* channel -> chan_t */
    int freeing;
    unsigned inflight;    /* commands sent on cmd and not answered */
    unsigned queue_max;   /* bound on inflight (0 = none): past it commands are refused */
    uint64_t progress_ms; /* last reply, or the send that started the current wait */
    struct event *watchdog;
};

typedef struct pending {
    pl_bus_t *bus;
    pl_bus_reply_fn fn;
    void *arg;
} pending_t;

static void connect_link(pl_bus_t *bus, link_t *l);

static const char *link_name(pl_bus_t *bus, const link_t *l)
{
    return l == &bus->cmd ? "command" : "subscription";
}

static void on_retry_cmd(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pl_bus_t *bus = arg;
    connect_link(bus, &bus->cmd);
}

static void on_retry_sub(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pl_bus_t *bus = arg;
    connect_link(bus, &bus->sub);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pl_bus_t *bus = arg;
    if (bus->cmd.ac == NULL || bus->inflight == 0 || pl_mono_ms() - bus->progress_ms < STALL_MS)
        return;
    pl_log_warn("redis not answering, reconnecting\tpending=%u waited_ms=%" PRIu64, bus->inflight,
                pl_mono_ms() - bus->progress_ms);
    /* outside any hiredis callback: freeing here is allowed; pending
     * callbacks run with NULL and on_disconnect schedules the reconnect */
    redisAsyncFree(bus->cmd.ac);
}

/* Writes what hiredis still buffers for the link (e.g. presence leaves
 * queued by the last closing connections) before the bus goes away. */
static void flush_link(link_t *l)
{
    if (l->ac == NULL || !l->up)
        return;
    redisContext *c = &l->ac->c;
    int done = 0;
    for (int i = 0; i < 50 && !done; i++) {
        if (redisBufferWrite(c, &done) == REDIS_ERR)
            return;
        if (!done) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
            (void)poll(&pfd, 1, 20);
        }
    }
}

static void schedule_retry(pl_bus_t *bus, link_t *l)
{
    if (bus->freeing)
        return;
    int ms = 100;
    for (int i = 0; i < l->attempts && ms < 2000; i++)
        ms *= 2;
    if (ms > 2000)
        ms = 2000;
    l->attempts++;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(l->retry, &tv);
}

/* ---- subscription side ---- */

static void send_sub(pl_bus_t *bus, const char *channel, const char *verb);

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pl_bus_t *bus = privdata;
    redisReply *r = reply;
    (void)ac;
    if (r == NULL) {
        bus->sub.up = 0;
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    const char *name = r->element[1]->str;
    if (strcmp(kind, "message") == 0) {
        redisReply *p = r->element[2];
        if (p->type == REDIS_REPLY_STRING)
            bus->h.on_message(bus->h.arg, name, r->element[1]->len, p->str, p->len);
        return;
    }
    chan_t *c = pl_map_get(&bus->chans, name);
    if (c == NULL)
        return;
    if (strcmp(kind, "subscribe") == 0) {
        c->st = CH_ACTIVE;
        if (!c->want) {
            send_sub(bus, name, "UNSUBSCRIBE");
            return;
        }
        if (strcmp(name, bus->control) != 0)
            bus->h.on_subscribed(bus->h.arg, name);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        c->st = CH_NONE;
        if (c->want)
            send_sub(bus, name, "SUBSCRIBE");
        else
            free(pl_map_del(&bus->chans, name));
    }
}

static void send_sub(pl_bus_t *bus, const char *channel, const char *verb)
{
    chan_t *c = pl_map_get(&bus->chans, channel);
    if (!bus->sub.up || c == NULL)
        return;
    const char *argv[2] = {verb, channel};
    size_t lens[2] = {strlen(verb), strlen(channel)};
    int sub = verb[0] == 'S';
    if (redisAsyncCommandArgv(bus->sub.ac, on_sub_reply, bus, 2, argv, lens) != REDIS_OK) {
        pl_log_warn("redis %s failed\tchannel=%s", verb, channel);
        return;
    }
    c->st = sub ? CH_SUB_SENT : CH_UNSUB_SENT;
}

void pl_bus_subscribe(pl_bus_t *bus, const char *channel)
{
    chan_t *c = pl_map_get(&bus->chans, channel);
    if (c == NULL) {
        c = pl_xcalloc(1, sizeof(*c));
        pl_map_put(&bus->chans, channel, c);
    }
    c->want = 1;
    if (c->st == CH_NONE)
        send_sub(bus, channel, "SUBSCRIBE");
}

void pl_bus_unsubscribe(pl_bus_t *bus, const char *channel)
{
    chan_t *c = pl_map_get(&bus->chans, channel);
    if (c == NULL || strcmp(channel, bus->control) == 0)
        return;
    c->want = 0;
    if (c->st == CH_ACTIVE)
        send_sub(bus, channel, "UNSUBSCRIBE");
    else if (c->st == CH_NONE)
        free(pl_map_del(&bus->chans, channel));
}

int pl_bus_subscribed(pl_bus_t *bus, const char *channel)
{
    chan_t *c = pl_map_get(&bus->chans, channel);
    return c && c->want && c->st == CH_ACTIVE;
}

static void sub_reset(pl_bus_t *bus)
{
    /* collect unwanted names first: no deletes while iterating */
    size_t i, n = 0;
    char **dead = pl_xcalloc(bus->chans.n + 1, sizeof(*dead));
    for (pl_map_entry_t *e = pl_map_first(&bus->chans, &i); e;
         e = pl_map_next(&bus->chans, e, &i)) {
        chan_t *c = e->val;
        c->st = CH_NONE;
        if (!c->want)
            dead[n++] = e->key;
    }
    for (size_t k = 0; k < n; k++)
        free(pl_map_del(&bus->chans, dead[k]));
    free(dead);
}

static void sub_resubscribe(pl_bus_t *bus)
{
    /* the control channel first, so hiredis stays in subscribe mode */
    send_sub(bus, bus->control, "SUBSCRIBE");
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&bus->chans, &i); e;
         e = pl_map_next(&bus->chans, e, &i)) {
        chan_t *c = e->val;
        if (c->want && c->st == CH_NONE)
            send_sub(bus, e->key, "SUBSCRIBE");
    }
}

/* ---- connections ---- */

static link_t *link_of(pl_bus_t *bus, const redisAsyncContext *ac)
{
    if (bus->cmd.ac == ac)
        return &bus->cmd;
    if (bus->sub.ac == ac)
        return &bus->sub;
    return NULL;
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR)
        pl_log_error("redis AUTH/SELECT failed\terror=\"%s\"", r->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    pl_bus_t *bus = ac->data;
    link_t *l = link_of(bus, ac);
    if (l == NULL)
        return;
    if (status != REDIS_OK) {
        if (l->attempts < 2 || l->attempts % 20 == 0)
            pl_log_warn("redis connect failed\tlink=%s error=\"%s\"", link_name(bus, l),
                        ac->errstr);
        l->ac = NULL; /* hiredis frees it after this callback */
        l->up = 0;
        schedule_retry(bus, l);
        return;
    }
    if (l->attempts > 0)
        pl_log_info("redis connected\tlink=%s", link_name(bus, l));
    l->attempts = 0;
    l->up = 1;
    const char *argv[3];
    size_t lens[3];
    int argc = pl_redis_url_auth(&bus->url, argv, lens);
    if (argc > 0) /* pipelined ahead of everything else on this link */
        redisAsyncCommandArgv(l->ac, on_select, NULL, argc, argv, lens);
    if (l == &bus->cmd) {
        if (bus->url.db)
            redisAsyncCommand(l->ac, on_select, NULL, "SELECT %d", bus->url.db);
        if (bus->h.on_cmd_up)
            bus->h.on_cmd_up(bus->h.arg);
    } else {
        sub_resubscribe(bus);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pl_bus_t *bus = ac->data;
    link_t *l = link_of(bus, ac);
    if (l == NULL)
        return;
    l->ac = NULL;
    l->up = 0;
    if (l == &bus->cmd)
        bus->inflight = 0;
    if (bus->freeing)
        return;
    pl_log_warn("redis connection lost\tlink=%s error=\"%s\"", link_name(bus, l),
                status == REDIS_OK ? "closed" : ac->errstr);
    if (l == &bus->sub) {
        sub_reset(bus);
        if (bus->h.on_sub_down)
            bus->h.on_sub_down(bus->h.arg);
    }
    schedule_retry(bus, l);
}

static void connect_link(pl_bus_t *bus, link_t *l)
{
    if (bus->freeing || l->ac)
        return;
    redisAsyncContext *ac = bus->url.socket ? redisAsyncConnectUnix(bus->url.socket)
                                            : redisAsyncConnect(bus->url.host, bus->url.port);
    if (ac == NULL || ac->err) {
        pl_log_warn("redis connect failed\tlink=%s error=\"%s\"", link_name(bus, l),
                    ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(bus, l);
        return;
    }
    ac->data = bus;
    l->ac = ac;
    redisLibeventAttach(ac, bus->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

pl_bus_t *pl_bus_new(struct event_base *base, const char *url, const char *control,
                     const pl_bus_handlers_t *h)
{
    pl_bus_t *bus = pl_xcalloc(1, sizeof(*bus));
    char err[256];
    if (pl_redis_url_parse(url, &bus->url, err, sizeof(err)) < 0) {
        pl_log_error("redis_url: %s", err);
        free(bus);
        return NULL;
    }
    bus->base = base;
    bus->control = pl_xstrdup(control);
    bus->h = *h;
    pl_map_init(&bus->chans);
    chan_t *c = pl_xcalloc(1, sizeof(*c));
    c->want = 1;
    pl_map_put(&bus->chans, control, c);
    bus->cmd.retry = evtimer_new(base, on_retry_cmd, bus);
    bus->sub.retry = evtimer_new(base, on_retry_sub, bus);
    bus->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, bus);
    struct timeval tv = {1, 0};
    evtimer_add(bus->watchdog, &tv);
    connect_link(bus, &bus->cmd);
    connect_link(bus, &bus->sub);
    return bus;
}

void pl_bus_free(pl_bus_t *bus)
{
    if (bus == NULL)
        return;
    flush_link(&bus->cmd);
    bus->freeing = 1;
    event_free(bus->watchdog);
    if (bus->cmd.ac)
        redisAsyncFree(bus->cmd.ac);
    if (bus->sub.ac)
        redisAsyncFree(bus->sub.ac);
    event_free(bus->cmd.retry);
    event_free(bus->sub.retry);
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&bus->chans, &i); e; e = pl_map_next(&bus->chans, e, &i))
        free(e->val);
    pl_map_clear(&bus->chans);
    pl_redis_url_free(&bus->url);
    free(bus->control);
    free(bus);
}

int pl_bus_ready(const pl_bus_t *bus)
{
    return bus->cmd.up;
}

int pl_bus_sub_ready(const pl_bus_t *bus)
{
    return bus->sub.up;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pending_t *p = privdata;
    (void)ac;
    if (reply == NULL)
        p->bus->cmd.up = 0; /* the context is going away: refuse new commands now */
    if (p->bus->inflight > 0)
        p->bus->inflight--;
    p->bus->progress_ms = pl_mono_ms();
    p->fn(p->arg, reply);
    free(p);
}

void pl_bus_set_queue_max(pl_bus_t *bus, unsigned max)
{
    bus->queue_max = max;
}

int pl_bus_command(pl_bus_t *bus, pl_bus_reply_fn fn, void *arg, int argc, const char **argv,
                   const size_t *argvlen)
{
    if (!bus->cmd.up || bus->cmd.ac == NULL)
        return -1;
    if (bus->queue_max && bus->inflight >= bus->queue_max) {
        if (bus->h.on_queue_full)
            bus->h.on_queue_full(bus->h.arg);
        return -1;
    }
    pending_t *p = pl_xmalloc(sizeof(*p));
    p->bus = bus;
    p->fn = fn;
    p->arg = arg;
    if (redisAsyncCommandArgv(bus->cmd.ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    if (bus->inflight++ == 0)
        bus->progress_ms = pl_mono_ms();
    return 0;
}
