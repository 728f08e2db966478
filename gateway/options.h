/*
 * The gateway's configuration: every key, its default and its bounds live
 * in one table in options.c. Loaded and validated once in the master
 * before forking (and again on SIGHUP); workers only read it.
 */
#ifndef PL_OPTIONS_H
#define PL_OPTIONS_H

#include "config.h"

#include <stdint.h>

typedef struct pl_gw_config {
    /* core (issue: gateway core) */
    char *listen;              /* host:port to bind */
    int64_t workers;           /* 0 = number of CPUs */
    char *echo_path;           /* "" = off; test echo endpoint */
    int64_t max_message_size;  /* bytes, whole reassembled message (1009 above) */
    int64_t ping_interval;     /* ms between server pings */
    int64_t ping_timeout;      /* ms of silence after a ping before closing */
    int64_t handshake_timeout; /* ms to finish the HTTP upgrade */
    int64_t close_timeout;     /* ms to wait for the peer's close frame */
    int64_t drain_timeout;     /* ms workers wait for clients on shutdown */
    char *origins;             /* comma-separated allow-list; "" = any */
    char *log_level;           /* error|warn|info|debug */
    /* chat protocol */
    char *redis_url;           /* redis://host:port/db or a unix socket path */
    char *node_id;             /* "" = host name */
    char *token_secret;        /* HS256 secret */
    char *token_secret_file;   /* or read it from this file */
    char *token_issuer;        /* "" = iss not checked; else tokens' iss must equal it */
    char *token_audience;      /* "" = aud not checked; else tokens' aud must name it */
    int64_t auth_timeout;      /* ms for the first (auth) frame */
    int64_t idle_timeout;      /* ms without a command before closing 1000 "idle"; 0 = off */
    int64_t history_recent;    /* messages kept per room in Redis */
    int64_t history_ttl;       /* ms a room's recent history lives after its last message */
    int64_t rate_limit;        /* commands per second per user on a worker */
    int64_t rate_burst;        /* token bucket size (per user on a worker) */
    int64_t send_buffer_limit; /* bytes queued per connection before closing 1013 */
    int64_t max_text_size;     /* bytes of "text" in send/dm (too_large above) */
    /* history in MySQL */
    char *mysql_url;    /* mysql://user:pass@host:port/db or a unix socket; "" = off */
    int64_t mysql_pool; /* connections per worker */
    int archive;        /* 1: the send script XADDs to parley:archive; 0: no stream */
    /* limits (issue 8) */
    int64_t max_connections;        /* per worker; 0 = from RLIMIT_NOFILE (pl_worker_max_conns) */
    int64_t max_connections_per_ip; /* per node, all workers; 0 = off */
    char *trusted_proxies;          /* CIDR list (addr.h); "" = trust no proxy headers */
    int64_t presence_events_max;    /* users above which a room gets no join/leave events */
    int64_t recover_max; /* join since / refill replay, messages (bytes: send_buffer_limit/4) */
    int64_t refill_max;  /* messages one room-stream refill delivers in chunks; 0 = unbounded */
    int64_t stream_queue_max;         /* live messages queued per room, member or DM stream */
    int64_t history_wait_max;         /* history requests waiting for MySQL, per worker */
    int64_t redis_queue_max;          /* Redis commands in flight, per worker */
    int64_t max_unauthenticated;      /* per worker; 0 = max_connections in effect / 4 */
    int64_t max_auth_message_size;    /* bytes per message before auth (1009 above) */
    int64_t max_user_connections;     /* per user, cluster-wide (Redis); 0 = off */
    int64_t max_rooms_per_connection; /* join past it: too_many_rooms */
    int64_t typing_interval;          /* ms between forwarded typing events per user and room */
} pl_gw_config_t;

extern const pl_opt_t pl_gw_options[];

/* pl_config_load with pl_gw_options, then the checks between keys (archive
 * off with mysql_url set). Same contract: -1 with err filled, the caller
 * frees cfg with pl_config_free either way. */
int pl_gw_config_load(pl_gw_config_t *cfg, const char *file, int argc, char **argv, char *err,
                      size_t errlen);

#endif
