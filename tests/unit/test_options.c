/*
 * gateway/options.c: the gateway's option table. Every key has its
 * documented default, a help line and a unique name; each key's bounds
 * and check accept its edges and refuse what is past them, naming the key.
 * (The loader itself, common/config.c, is test_config.c's.)
 */
#include "config.h"
#include "options.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load_defaults(pl_gw_config_t *c)
{
    memset(c, 0, sizeof(*c));
    char err[512] = "";
    int rc = pl_config_load(pl_gw_options, c, NULL, 0, NULL, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "defaults refused: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void test_defaults(void)
{
    pl_gw_config_t c;
    load_defaults(&c);
    CU_ASSERT_STRING_EQUAL(c.listen, "0.0.0.0:8080");
    CU_ASSERT_EQUAL(c.workers, 0);
    CU_ASSERT_STRING_EQUAL(c.echo_path, "");
    CU_ASSERT_EQUAL(c.max_message_size, 65536);
    CU_ASSERT_EQUAL(c.ping_interval, 25000);
    CU_ASSERT_EQUAL(c.ping_timeout, 10000);
    CU_ASSERT_EQUAL(c.handshake_timeout, 10000);
    CU_ASSERT_EQUAL(c.close_timeout, 5000);
    CU_ASSERT_EQUAL(c.drain_timeout, 10000);
    CU_ASSERT_STRING_EQUAL(c.origins, "");
    CU_ASSERT_STRING_EQUAL(c.log_level, "info");
    CU_ASSERT_STRING_EQUAL(c.redis_url, "redis://127.0.0.1:6379/0");
    CU_ASSERT_STRING_EQUAL(c.node_id, "");
    CU_ASSERT_STRING_EQUAL(c.token_secret, "");
    CU_ASSERT_STRING_EQUAL(c.token_secret_file, "");
    CU_ASSERT_STRING_EQUAL(c.token_issuer, "");
    CU_ASSERT_STRING_EQUAL(c.token_audience, "");
    CU_ASSERT_EQUAL(c.auth_timeout, 5000);
    CU_ASSERT_EQUAL(c.idle_timeout, 0);
    CU_ASSERT_EQUAL(c.history_recent, 1000);
    CU_ASSERT_EQUAL(c.history_ttl, 7LL * 86400000);
    CU_ASSERT_EQUAL(c.rate_limit, 20);
    CU_ASSERT_EQUAL(c.rate_burst, 40);
    CU_ASSERT_EQUAL(c.send_buffer_limit, 4 << 20);
    CU_ASSERT_EQUAL(c.max_text_size, 4096);
    CU_ASSERT_STRING_EQUAL(c.mysql_url, "");
    CU_ASSERT_EQUAL(c.mysql_pool, 2);
    CU_ASSERT_EQUAL(c.archive, 1);
    CU_ASSERT_EQUAL(c.max_connections, 0);
    CU_ASSERT_EQUAL(c.max_connections_per_ip, 0);
    CU_ASSERT_STRING_EQUAL(c.trusted_proxies, "");
    CU_ASSERT_EQUAL(c.presence_events_max, 200);
    CU_ASSERT_EQUAL(c.recover_max, 500);
    CU_ASSERT_EQUAL(c.refill_max, 100000);
    CU_ASSERT_EQUAL(c.stream_queue_max, 10000);
    CU_ASSERT_EQUAL(c.history_wait_max, 32);
    CU_ASSERT_EQUAL(c.redis_queue_max, 20000);
    CU_ASSERT_EQUAL(c.max_unauthenticated, 0);
    CU_ASSERT_EQUAL(c.max_auth_message_size, 4096);
    CU_ASSERT_EQUAL(c.max_user_connections, 20);
    CU_ASSERT_EQUAL(c.max_rooms_per_connection, 100);
    CU_ASSERT_EQUAL(c.typing_interval, 3000);
    pl_config_free(pl_gw_options, &c);
    CU_ASSERT_PTR_NULL(c.listen);
}

/* Names are unique lowercase [a-z_] (so env PARLEY_<NAME> and --name are
 * unambiguous), each with a help line and a field inside the struct. */
static void test_table_shape(void)
{
    size_t n = 0;
    for (const pl_opt_t *o = pl_gw_options; o->name; o++, n++) {
        CU_ASSERT(strspn(o->name, "abcdefghijklmnopqrstuvwxyz_") == strlen(o->name));
        CU_ASSERT_PTR_NOT_NULL(o->help);
        CU_ASSERT_PTR_NOT_NULL(o->def);
        CU_ASSERT(o->offset < sizeof(pl_gw_config_t));
        for (const pl_opt_t *p = pl_gw_options; p != o; p++)
            CU_ASSERT(strcmp(p->name, o->name) != 0);
    }
    CU_ASSERT_EQUAL(n, 42); /* a new key: add its default to test_defaults */
}

static void ok_value(const char *key, const char *value)
{
    pl_gw_config_t c;
    load_defaults(&c);
    char err[512] = "";
    int rc = pl_config_set(pl_gw_options, &c, key, value, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s = %s refused: %s\n", key, value, err);
    CU_ASSERT_EQUAL(rc, 0);
    pl_config_free(pl_gw_options, &c);
}

/* Refused, with the key at the start of the reason; the old value stays. */
static void bad_value(const char *key, const char *value)
{
    pl_gw_config_t c;
    load_defaults(&c);
    pl_gw_config_t before = c;
    char err[512] = "";
    int rc = pl_config_set(pl_gw_options, &c, key, value, err, sizeof(err));
    if (rc != -1)
        fprintf(stderr, "%s = %s accepted\n", key, value);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(strncmp(err, key, strlen(key)), 0);
    CU_ASSERT(memcmp(&before, &c, sizeof(c)) == 0);
    pl_config_free(pl_gw_options, &c);
}

static void test_bounds(void)
{
    ok_value("recover_max", "1000"); /* a refill's MariaDB part is one page (PL_DB_HISTORY_MAX) */
    bad_value("recover_max", "1001");
    bad_value("recover_max", "0");
    ok_value("refill_max", "0"); /* no bound */
    bad_value("refill_max", "-1");
    bad_value("stream_queue_max", "15");
    ok_value("history_wait_max", "1024");
    bad_value("history_wait_max", "0");
    bad_value("redis_queue_max", "15");
    ok_value("workers", "256");
    ok_value("presence_events_max", "0"); /* 0: no room gets join/leave events */
    bad_value("presence_events_max", "-1");
    bad_value("workers", "257");
    bad_value("workers", "-1");
    bad_value("workers", "many");
    ok_value("max_message_size", "126");
    bad_value("max_message_size", "125"); /* must hold a 125-byte control frame + 1 */
    ok_value("max_message_size", "1g");
    bad_value("max_message_size", "2g");
    ok_value("max_text_size", "65535"); /* the archiver's TEXT column (PL_TEXT_MAX) */
    bad_value("max_text_size", "64k");
    bad_value("max_text_size", "1m");
    bad_value("max_text_size", "0");
    ok_value("archive", "off");
    bad_value("archive", "maybe");
    ok_value("ping_interval", "100ms");
    bad_value("ping_interval", "99ms");
    bad_value("ping_interval", "2d");
    ok_value("close_timeout", "10ms");
    bad_value("close_timeout", "9ms");
    ok_value("drain_timeout", "0");
    ok_value("history_ttl", "1s");
    bad_value("history_ttl", "999ms");
    ok_value("history_recent", "1");
    bad_value("history_recent", "0");
    bad_value("rate_limit", "0");
    bad_value("rate_burst", "1000001");
    ok_value("send_buffer_limit", "4k");
    bad_value("send_buffer_limit", "4095");
    ok_value("mysql_pool", "64");
    bad_value("mysql_pool", "0");
    bad_value("mysql_pool", "65");
    ok_value("max_connections", "1");
    bad_value("max_connections", "-1");
    ok_value("max_connections_per_ip", "65535");
    bad_value("max_connections_per_ip", "65536"); /* counts are 16-bit (iplimit.h) */
    ok_value("max_user_connections", "0");        /* off */
    bad_value("max_user_connections", "-1");
    ok_value("max_rooms_per_connection", "1");
    bad_value("max_rooms_per_connection", "0");
    ok_value("max_auth_message_size", "126");
    bad_value("max_auth_message_size", "125");
    ok_value("typing_interval", "0");
    ok_value("typing_interval", "500ms");
}

/* The keys with a check function. */
static void test_checks(void)
{
    ok_value("listen", "127.0.0.1:9000");
    bad_value("listen", "nowhere");
    bad_value("listen", "127.0.0.1:70000");
    ok_value("echo_path", "");
    ok_value("echo_path", "/echo");
    ok_value("trusted_proxies", "");
    ok_value("trusted_proxies", "10.0.0.0/8, fd00::/8 127.0.0.1");
    bad_value("trusted_proxies", "10.0.0.1/8");
    bad_value("trusted_proxies", "proxy.example");
    bad_value("echo_path", "echo");
    ok_value("log_level", "debug");
    bad_value("log_level", "loud");
    ok_value("redis_url", "/run/redis.sock");
    bad_value("redis_url", "http://127.0.0.1:6379");
    ok_value("mysql_url", "");
    ok_value("mysql_url", "mysql://parley:pw@127.0.0.1:3306/parley");
    bad_value("mysql_url", "mysql://parley@127.0.0.1/"); /* no database */
    bad_value("mysql_url", "mysql://parley@127.0.0.1:0/parley");
    /* free text keys take anything */
    ok_value("origins", "https://a.example, https://b.example");
    ok_value("node_id", "node-1");
}

/* pl_gw_config_load: the checks between keys, after every key is set. */
static int load_args(int argc, char **argv, char *err, size_t errlen)
{
    pl_gw_config_t c;
    memset(&c, 0, sizeof(c));
    int rc = pl_gw_config_load(&c, NULL, argc, argv, err, errlen);
    pl_config_free(pl_gw_options, &c);
    return rc;
}

static void test_combined(void)
{
    char err[512] = "";
    char *off_mysql[] = {"--archive=off", "--mysql_url=mysql://u@127.0.0.1/parley"};
    CU_ASSERT_EQUAL(load_args(2, off_mysql, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(strncmp(err, "archive", 7), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mysql_url"));
    char *off[] = {"--archive=off"};
    CU_ASSERT_EQUAL(load_args(1, off, err, sizeof(err)), 0);
    char *on_mysql[] = {"--archive=on", "--mysql_url=mysql://u@127.0.0.1/parley"};
    CU_ASSERT_EQUAL(load_args(2, on_mysql, err, sizeof(err)), 0);
    char *big[] = {"--max_text_size=100k"}; /* a key's own check still applies */
    CU_ASSERT_EQUAL(load_args(1, big, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(strncmp(err, "max_text_size", 13), 0);
}

PL_UNIT_SUITE(options, PL_TEST(test_defaults), PL_TEST(test_table_shape), PL_TEST(test_bounds),
              PL_TEST(test_checks), PL_TEST(test_combined))
