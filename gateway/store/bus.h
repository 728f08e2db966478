/*
 * The worker's link to Redis (hiredis async on the worker's libevent
 * base): one connection for commands, one for subscriptions, each
 * reconnecting with backoff on its own. The bus remembers which channels
 * the worker wants and re-subscribes them after a reconnect, telling the
 * owner through on_subscribed so it can fetch what it missed.
 *
 * Replies live only during their callback (hiredis rule): copy what you
 * keep. A NULL reply means the command connection went away (the command
 * may or may not have run).
 */
#ifndef PL_BUS_H
#define PL_BUS_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct event_base;

typedef struct pl_bus pl_bus_t;

typedef void (*pl_bus_reply_fn)(void *arg, redisReply *r);

typedef struct pl_bus_handlers {
    void *arg;
    /* A published payload on a channel this bus subscribed to. */
    void (*on_message)(void *arg, const char *channel, size_t chlen, const char *payload,
                       size_t len);
    /* The subscription to channel is confirmed (first time or after a
     * reconnect): messages from now on will arrive. */
    void (*on_subscribed)(void *arg, const char *channel);
    /* The subscription connection dropped: no messages until the
     * channels are confirmed again. */
    void (*on_sub_down)(void *arg);
    /* The command connection is (re)established. */
    void (*on_cmd_up)(void *arg);
    /* A command was refused because queue_max commands are in flight
     * (pl_bus_set_queue_max); optional. */
    void (*on_queue_full)(void *arg);
} pl_bus_handlers_t;

/* Creates the bus and starts connecting. url: a redis_url as
 * common/redis_url.h parses it (AUTH on both links, SELECT on the command
 * link). control is a channel kept subscribed for the bus's lifetime
 * (hiredis leaves subscribe mode when the count drops to 0, which races
 * with re-subscribing). Returns NULL on a bad url (logged). */
pl_bus_t *pl_bus_new(struct event_base *base, const char *url, const char *control,
                     const pl_bus_handlers_t *h);
/* Disconnects (pending callbacks get NULL) and frees. */
void pl_bus_free(pl_bus_t *bus);

/* 1 when the command connection is up. */
int pl_bus_ready(const pl_bus_t *bus);
/* 1 when the subscription connection is up. */
int pl_bus_sub_ready(const pl_bus_t *bus);

/* Bounds the command queue: at most max commands sent and not yet
 * answered (0 = no bound). Past it pl_bus_command refuses at once, so a
 * stalled Redis or a flood of requests cannot grow hiredis's buffers
 * without end. */
void pl_bus_set_queue_max(pl_bus_t *bus, unsigned max);

/* Sends a command. Returns -1 at once (fn is not called) when the
 * command connection is down or the queue is full; else fn is called
 * exactly once later. */
int pl_bus_command(pl_bus_t *bus, pl_bus_reply_fn fn, void *arg, int argc, const char **argv,
                   const size_t *argvlen);

/* Wants / no longer wants a channel. Idempotent; the bus serialises
 * SUBSCRIBE/UNSUBSCRIBE per channel so replies never cross. */
void pl_bus_subscribe(pl_bus_t *bus, const char *channel);
void pl_bus_unsubscribe(pl_bus_t *bus, const char *channel);
/* 1 when the channel's subscription is confirmed. */
int pl_bus_subscribed(pl_bus_t *bus, const char *channel);

#endif
