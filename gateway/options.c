/*
 * The gateway's option table (see options.h): names, defaults, bounds and
 * checks for every key, in one place.
 */
#include "options.h"
#include "addr.h"
#include "checks.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_path(const char *v, char *err, size_t errlen)
{
    if (*v != '\0' && *v != '/') {
        snprintf(err, errlen, "'%s' must start with /", v);
        return -1;
    }
    return 0;
}

static int check_cidrs(const char *v, char *err, size_t errlen)
{
    pl_cidr_list_t l;
    if (pl_cidr_list_parse(v, &l, err, errlen) < 0)
        return -1;
    pl_cidr_list_free(&l);
    return 0;
}

#define OFF(f) offsetof(pl_gw_config_t, f)
#define DAY_MS 86400000LL

const pl_opt_t pl_gw_options[] = {
    {"listen", PL_OPT_STR, OFF(listen), "0.0.0.0:8080", 0, 0, pl_check_listen,
     "address to listen on"},
    {"workers", PL_OPT_INT, OFF(workers), "0", 0, 256, NULL, "worker processes (0 = one per CPU)"},
    {"echo_path", PL_OPT_STR, OFF(echo_path), "", 0, 0, check_path,
     "path of the test echo endpoint (off if empty)"},
    {"max_message_size", PL_OPT_SIZE, OFF(max_message_size), "64k", 126, 1 << 30, NULL,
     "largest client message in bytes"},
    {"ping_interval", PL_OPT_DURATION, OFF(ping_interval), "25s", 100, DAY_MS, NULL,
     "time between server pings"},
    {"ping_timeout", PL_OPT_DURATION, OFF(ping_timeout), "10s", 100, DAY_MS, NULL,
     "silence after a ping before closing"},
    {"handshake_timeout", PL_OPT_DURATION, OFF(handshake_timeout), "10s", 100, DAY_MS, NULL,
     "time to complete the HTTP upgrade"},
    {"close_timeout", PL_OPT_DURATION, OFF(close_timeout), "5s", 10, DAY_MS, NULL,
     "time to wait for the peer's close frame"},
    {"drain_timeout", PL_OPT_DURATION, OFF(drain_timeout), "10s", 0, DAY_MS, NULL,
     "time to wait for clients on shutdown"},
    {"origins", PL_OPT_STR, OFF(origins), "", 0, 0, NULL,
     "comma-separated allowed Origin values (empty = any)"},
    {"log_level", PL_OPT_STR, OFF(log_level), "info", 0, 0, pl_check_log_level,
     "error, warn, info or debug"},
    {"redis_url", PL_OPT_STR, OFF(redis_url), "redis://127.0.0.1:6379/0", 0, 0, pl_check_redis_url,
     "Redis server"},
    {"node_id", PL_OPT_STR, OFF(node_id), "", 0, 0, NULL, "this node's name (default: host name)"},
    {"token_secret", PL_OPT_STR, OFF(token_secret), "", 0, 0, NULL,
     "HS256 secret for client tokens"},
    {"token_secret_file", PL_OPT_STR, OFF(token_secret_file), "", 0, 0, NULL,
     "file holding the token secret"},
    {"token_issuer", PL_OPT_STR, OFF(token_issuer), "", 0, 0, NULL,
     "required iss claim of client tokens (empty = not checked)"},
    {"token_audience", PL_OPT_STR, OFF(token_audience), "", 0, 0, NULL,
     "audience client tokens' aud claim must name (empty = not checked)"},
    {"auth_timeout", PL_OPT_DURATION, OFF(auth_timeout), "5s", 100, DAY_MS, NULL,
     "time for the first (auth) frame"},
    {"idle_timeout", PL_OPT_DURATION, OFF(idle_timeout), "0", 0, 30 * DAY_MS, NULL,
     "close a connection that sent no command for this long (1000 \"idle\"; 0 = off)"},
    {"history_recent", PL_OPT_INT, OFF(history_recent), "1000", 1, 1000000, NULL,
     "messages per room kept in Redis"},
    {"history_ttl", PL_OPT_DURATION, OFF(history_ttl), "7d", 1000, 3650 * DAY_MS, NULL,
     "how long a quiet room's recent history lives"},
    {"rate_limit", PL_OPT_INT, OFF(rate_limit), "20", 1, 1000000, NULL,
     "commands per second per user on a worker (all its connections share one bucket)"},
    {"rate_burst", PL_OPT_INT, OFF(rate_burst), "40", 1, 1000000, NULL,
     "burst of commands per user on a worker"},
    {"send_buffer_limit", PL_OPT_SIZE, OFF(send_buffer_limit), "4m", 4096, 1LL << 32, NULL,
     "bytes queued per client before closing 1013"},
    /* bounded by the check, not min/max, so the error names the archiver */
    {"max_text_size", PL_OPT_SIZE, OFF(max_text_size), "4k", 0, 0, pl_check_text_size,
     "largest message text in bytes (at most 65535: what the archiver stores)"},
    {"mysql_url", PL_OPT_STR, OFF(mysql_url), "", 0, 0, pl_check_mysql_url,
     "MySQL/MariaDB for older history (empty = off)"},
    {"mysql_pool", PL_OPT_INT, OFF(mysql_pool), "2", 1, 64, NULL, "MySQL connections per worker"},
    {"archive", PL_OPT_BOOL, OFF(archive), "on", 0, 0, NULL,
     "append every message to the archive stream for parley-archiver (off: Redis only, "
     "needs mysql_url empty)"},
    /* limits (issue 8; docs/ops.md "Limits") */
    {"max_connections", PL_OPT_INT, OFF(max_connections), "0", 0, 10000000, NULL,
     "client connections per worker (0 = the open-file limit less a reserve for Redis, "
     "MySQL and the listener); more get HTTP 503"},
    {"max_connections_per_ip", PL_OPT_INT, OFF(max_connections_per_ip), "0", 0, 65535, NULL,
     "client connections per address on this node, all workers together (0 = off); "
     "more get HTTP 503"},
    {"trusted_proxies", PL_OPT_STR, OFF(trusted_proxies), "", 0, 0, check_cidrs,
     "CIDRs of proxies whose X-Forwarded-For / X-Real-IP name the client (empty = none)"},
    {"presence_events_max", PL_OPT_INT, OFF(presence_events_max), "200", 0, 1000000, NULL,
     "rooms with more users than this get no presence join/leave events"},
    /* bounded work (issue 8 "Bounded work", issue 13 refills; docs/ops.md "Limits") */
    {"recover_max", PL_OPT_INT, OFF(recover_max), "500", 1, 1000, NULL,
     "messages a join with since replays at most (past it: recovered:false), and the size of "
     "each chunk of a worker's refill (never more bytes than send_buffer_limit / 4)"},
    {"refill_max", PL_OPT_INT, OFF(refill_max), "100000", 0, 1LL << 40, NULL,
     "messages one refill of a room stream delivers in chunks at most (0 = no bound); "
     "the rest is announced as one gap event"},
    {"stream_queue_max", PL_OPT_INT, OFF(stream_queue_max), "10000", 16, 10000000, NULL,
     "live messages held per room, member or DM stream while it waits for a fetch (and never "
     "more bytes than send_buffer_limit)"},
    {"history_wait_max", PL_OPT_INT, OFF(history_wait_max), "32", 1, 1024, NULL,
     "history requests per worker waiting for MySQL; more answer unavailable"},
    {"redis_queue_max", PL_OPT_INT, OFF(redis_queue_max), "20000", 16, 10000000, NULL,
     "Redis commands per worker sent and not yet answered; more answer unavailable"},
    {"max_unauthenticated", PL_OPT_INT, OFF(max_unauthenticated), "0", 0, 10000000, NULL,
     "WebSockets per worker not yet authenticated (0 = a quarter of max_connections in "
     "effect); past it the oldest is closed 1013"},
    {"max_auth_message_size", PL_OPT_SIZE, OFF(max_auth_message_size), "4k", 126, 1 << 30, NULL,
     "largest message before auth (at most max_message_size); more closes 1009"},
    {"max_user_connections", PL_OPT_INT, OFF(max_user_connections), "20", 0, 1000000, NULL,
     "connections per user in the whole cluster, counted in Redis (0 = off); more get "
     "too_many_connections and 1008"},
    {"max_rooms_per_connection", PL_OPT_INT, OFF(max_rooms_per_connection), "100", 1, 1000000, NULL,
     "rooms one connection may join; more get too_many_rooms"},
    {"typing_interval", PL_OPT_DURATION, OFF(typing_interval), "3s", 0, DAY_MS, NULL,
     "a user's typing events per room are forwarded at most once per interval (0 = all)"},
    PL_OPT_END,
};

/* Keys that only make sense together, checked after every key is set. */
static int check_combined(const pl_gw_config_t *c, char *err, size_t errlen)
{
    /* With MySQL on, Redis keeps every message the archiver has not
     * committed (the archived marker) and older history comes from MySQL:
     * without the stream nothing reaches MySQL and recent grows forever. */
    if (!c->archive && c->mysql_url[0]) {
        snprintf(err, errlen,
                 "archive: off needs mysql_url empty (history in MySQL is "
                 "written by parley-archiver from the archive stream)");
        return -1;
    }
    return 0;
}

int pl_gw_config_load(pl_gw_config_t *cfg, const char *file, int argc, char **argv, char *err,
                      size_t errlen)
{
    if (pl_config_load(pl_gw_options, cfg, file, argc, argv, err, errlen) < 0)
        return -1;
    return check_combined(cfg, err, errlen);
}
