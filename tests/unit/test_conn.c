/*
 * conn.c and the ops table, driven as the transport runs them: a real
 * worker event base (pl_worker_init, no listening socket), one end of a
 * socketpair handed to pl_conn_new, the test playing the client on the
 * other end, and a stub module registered for /stub that records every
 * hook. No chat, no Redis.
 */
#define PL_IN_NET /* a test of the transport: may use its private API */
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "net_private.h"
#include "unit.h"
#include "util.h"
#include "ws.h"

#include <event2/event.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 1.3 */

/* ---- the stub module ---- */

static struct {
    int starts, drains, stops;
    int opens, messages, closeds;
    int closed_inside_close; /* closed ran while the stub was in pl_conn_close */
    int in_close;
    pl_conn_t *conn; /* from open until closed */
    char last[256];  /* the last text message */
    size_t last_len;
} stub;

static int stub_worker_start(pl_worker_t *w)
{
    (void)w;
    stub.starts++;
    return 0;
}

static void stub_worker_drain(pl_worker_t *w)
{
    (void)w;
    stub.drains++;
}

static void stub_worker_stop(pl_worker_t *w)
{
    (void)w;
    stub.stops++;
}

static void stub_open(pl_conn_t *c)
{
    stub.opens++;
    stub.conn = c;
    c->session = &stub;
}

/* "echo ..." is answered with "re: ...", "bye" closes with 1000. */
static void stub_message(pl_conn_t *c, const uint8_t *text, size_t len)
{
    CU_ASSERT_PTR_EQUAL(c->session, &stub);
    stub.messages++;
    stub.last_len = len < sizeof(stub.last) ? len : sizeof(stub.last) - 1;
    memcpy(stub.last, text, stub.last_len);
    stub.last[stub.last_len] = '\0';
    if (len > 5 && memcmp(text, "echo ", 5) == 0) {
        char reply[300];
        int n = snprintf(reply, sizeof(reply), "re: %.*s", (int)(len - 5), text + 5);
        pl_conn_send_text(c, reply, (size_t)n);
    } else if (len == 3 && memcmp(text, "bye", 3) == 0) {
        stub.in_close = 1;
        pl_conn_close(c, PL_WS_CLOSE_NORMAL, "stub says bye");
        stub.in_close = 0;
    }
}

static void stub_closed(pl_conn_t *c)
{
    CU_ASSERT_PTR_EQUAL(c, stub.conn);
    stub.closeds++;
    stub.closed_inside_close |= stub.in_close;
    c->session = NULL;
    stub.conn = NULL;
}

static const pl_ws_ops_t stub_ops = {
    .name = "stub",
    .worker_start = stub_worker_start,
    .worker_drain = stub_worker_drain,
    .worker_stop = stub_worker_stop,
    .open = stub_open,
    .message = stub_message,
    .closed = stub_closed, /* no binary: text only */
};

/* ---- the harness: a worker, one connection, the client's end ---- */

typedef struct harness {
    pl_gw_config_t cfg;
    pl_metrics_t metrics;
    pl_worker_t w;
    pl_conn_t *c;
    int client;          /* the test's end of the socketpair */
    uint8_t in[1 << 16]; /* bytes the client has read and not consumed */
    size_t in_len;
    int eof; /* the server closed or half-closed its end */
    int saved_log_level;
} harness_t;

static harness_t h;

static void setup(void)
{
    memset(&stub, 0, sizeof(stub));
    memset(&h, 0, sizeof(h));
    h.saved_log_level = pl_log_level;
    pl_log_level = PL_LOG_ERROR;
    signal(SIGPIPE, SIG_IGN); /* as the worker does: a write to a closed peer is an error */
    char err[256];
    static char k[] = "--echo_path", v[] = "/echo"; /* main.c registers it, not this: 404 */
    char *argv[] = {k, v};
    CU_ASSERT_FATAL(pl_config_load(pl_gw_options, &h.cfg, NULL, 2, argv, err, sizeof(err)) == 0);
    pl_ops_clear();
    CU_ASSERT_FATAL(pl_ops_register("/stub", &stub_ops) == 0);
    CU_ASSERT_FATAL(pl_worker_init(&h.w, &h.cfg, 0, -1, &h.metrics) == 0);
    CU_ASSERT_FATAL(pl_ops_worker_start(&h.w) == 0);
    CU_ASSERT_EQUAL(stub.starts, 1);
    int sv[2];
    CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    h.c = pl_conn_new(&h.w, sv[0], (struct sockaddr *)&sa, 0);
    h.client = sv[1];
    CU_ASSERT_EQUAL(pl_worker_nopen(&h.w), 1);
}

static void teardown(void)
{
    pl_ops_worker_stop(&h.w);
    CU_ASSERT_EQUAL(stub.stops, 1);
    pl_worker_fini(&h.w);
    if (h.client >= 0)
        close(h.client);
    pl_ops_clear();
    pl_config_free(pl_gw_options, &h.cfg);
    pl_log_level = h.saved_log_level;
}

/* Runs the worker's loop until nothing is ready (callbacks activated by
 * others, such as the end-of-pass free, included). */
static void pump(void)
{
    for (int i = 0; i < 4; i++)
        event_base_loop(h.w.base, EVLOOP_NONBLOCK);
}

static void client_send(const void *data, size_t len)
{
    CU_ASSERT_EQUAL_FATAL(write(h.client, data, len), (ssize_t)len);
    pump();
}

/* Reads what the server has written so far into h.in. */
static void client_read(void)
{
    pump();
    for (;;) {
        ssize_t n = read(h.client, h.in + h.in_len, sizeof(h.in) - h.in_len);
        if (n > 0) {
            h.in_len += (size_t)n;
            continue;
        }
        if (n == 0)
            h.eof = 1;
        else
            CU_ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        return;
    }
}

static void consume(size_t n)
{
    memmove(h.in, h.in + n, h.in_len - n);
    h.in_len -= n;
}

/* Reads the response head; returns it (NUL-terminated, static) or "". */
static const char *client_head(void)
{
    static char head[1024];
    client_read();
    uint8_t *end = memmem(h.in, h.in_len, "\r\n\r\n", 4);
    if (end == NULL)
        return "";
    size_t n = (size_t)(end + 4 - h.in);
    CU_ASSERT_FATAL(n < sizeof(head));
    memcpy(head, h.in, n);
    head[n] = '\0';
    consume(n);
    return head;
}

static void client_upgrade(const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    client_send(req, (size_t)n);
}

/* Sends one masked client frame (payload < 126 bytes). */
static void client_frame(uint8_t first, const void *payload, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t f[6 + 125];
    CU_ASSERT_FATAL(len < 126);
    f[0] = first;
    f[1] = (uint8_t)(0x80 | len);
    memcpy(f + 2, mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = ((const uint8_t *)payload)[i] ^ mask[i % 4];
    client_send(f, 6 + len);
}

static void client_close(uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    client_frame(0x80 | PL_WS_CLOSE, p, 2);
}

/* Reads one unmasked server frame (payload < 126 bytes); returns its
 * opcode with the payload copied to out, or -1 if none is complete. */
static int server_frame(char *out, size_t cap, size_t *len)
{
    client_read();
    if (h.in_len < 2 || h.in_len < 2 + (size_t)(h.in[1] & 0x7f))
        return -1;
    CU_ASSERT_EQUAL(h.in[1] & 0x80, 0); /* servers do not mask */
    CU_ASSERT((h.in[1] & 0x7f) < 126);
    CU_ASSERT(h.in[0] & 0x80); /* FIN */
    int opcode = h.in[0] & 0x0f;
    size_t n = h.in[1] & 0x7f;
    CU_ASSERT_FATAL(n < cap);
    memcpy(out, h.in + 2, n);
    out[n] = '\0';
    *len = n;
    consume(2 + n);
    return opcode;
}

/* Expects a close frame next; returns its code (0 if none). */
static unsigned server_close_code(void)
{
    char p[128];
    size_t n = 0;
    if (server_frame(p, sizeof(p), &n) != PL_WS_CLOSE || n < 2)
        return 0;
    return (unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1];
}

static void open_ws(void)
{
    client_upgrade("/stub");
    const char *head = client_head();
    CU_ASSERT(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(head, "Sec-WebSocket-Accept: " ACCEPT "\r\n"));
    CU_ASSERT_EQUAL(stub.opens, 1);
    CU_ASSERT_PTR_EQUAL(stub.conn, h.c);
    CU_ASSERT_EQUAL(h.c->state, CONN_OPEN);
}

/* The connection is CLOSED and, after the end of the loop pass, freed. */
static void assert_gone(void)
{
    pump();
    CU_ASSERT_EQUAL(pl_worker_nopen(&h.w), 0);
    CU_ASSERT_EQUAL(h.metrics.connections_open, 0);
}

/* ---- tests ---- */

static void test_upgrade_message_reply_close(void)
{
    setup();
    open_ws();
    CU_ASSERT_EQUAL(stub.messages, 0);

    client_frame(0x80 | PL_WS_TEXT, "hello", 5);
    CU_ASSERT_EQUAL(stub.messages, 1);
    CU_ASSERT_STRING_EQUAL(stub.last, "hello");

    client_frame(0x80 | PL_WS_TEXT, "echo ping", 9);
    CU_ASSERT_EQUAL(stub.messages, 2);
    char p[128];
    size_t n = 0;
    CU_ASSERT_EQUAL(server_frame(p, sizeof(p), &n), PL_WS_TEXT);
    CU_ASSERT_STRING_EQUAL(p, "re: ping");

    /* a message in two fragments arrives whole */
    client_frame(PL_WS_TEXT, "echo fr", 7);
    CU_ASSERT_EQUAL(stub.messages, 2);
    client_frame(0x80 | PL_WS_CONT, "agment", 6);
    CU_ASSERT_EQUAL(stub.messages, 3);
    CU_ASSERT_STRING_EQUAL(stub.last, "echo fragment");
    CU_ASSERT_EQUAL(server_frame(p, sizeof(p), &n), PL_WS_TEXT);
    CU_ASSERT_STRING_EQUAL(p, "re: fragment");

    /* the client closes: close echoed, then closed exactly once */
    client_close(PL_WS_CLOSE_NORMAL);
    CU_ASSERT_EQUAL(server_close_code(), PL_WS_CLOSE_NORMAL);
    client_read();
    CU_ASSERT_EQUAL(stub.closeds, 1);
    CU_ASSERT_PTR_NULL(stub.conn);
    CU_ASSERT(h.eof);
    assert_gone();
    CU_ASSERT_EQUAL(stub.closeds, 1);
    CU_ASSERT_EQUAL(stub.opens, 1);
    CU_ASSERT_EQUAL(h.metrics.frames_in_total, 5);
    CU_ASSERT_EQUAL(h.metrics.frames_out_total, 3);
    teardown();
}

static void test_module_close_runs_closed_later(void)
{
    setup();
    open_ws();
    client_frame(0x80 | PL_WS_TEXT, "bye", 3);
    CU_ASSERT_EQUAL(h.c->state, CONN_CLOSING);
    CU_ASSERT_EQUAL(stub.closeds, 0); /* not from inside pl_conn_close */
    CU_ASSERT_EQUAL(server_close_code(), PL_WS_CLOSE_NORMAL);
    client_frame(0x80 | PL_WS_TEXT, "late", 4); /* after our close: dropped */
    CU_ASSERT_EQUAL(stub.messages, 1);
    client_close(PL_WS_CLOSE_NORMAL);
    CU_ASSERT_EQUAL(stub.closeds, 1);
    CU_ASSERT_EQUAL(stub.closed_inside_close, 0);
    assert_gone();
    teardown();
}

static void test_binary_on_text_only_path_closes_1003(void)
{
    setup();
    open_ws();
    client_frame(0x80 | PL_WS_BINARY, "\x01\x02", 2);
    CU_ASSERT_EQUAL(stub.messages, 0);
    CU_ASSERT_EQUAL(server_close_code(), PL_WS_CLOSE_UNSUPPORTED);
    client_close(PL_WS_CLOSE_UNSUPPORTED);
    CU_ASSERT_EQUAL(stub.closeds, 1);
    assert_gone();
    teardown();
}

static void test_peer_eof_runs_closed_once(void)
{
    setup();
    open_ws();
    close(h.client);
    h.client = -1;
    pump();
    CU_ASSERT_EQUAL(stub.closeds, 1);
    assert_gone();
    CU_ASSERT_EQUAL(stub.closeds, 1);
    teardown();
}

static void test_unknown_path_is_404_without_open(void)
{
    setup();
    client_upgrade("/echo"); /* echo_path is set, but nobody registered it */
    const char *head = client_head();
    CU_ASSERT(strncmp(head, "HTTP/1.1 404 ", 13) == 0);
    CU_ASSERT_EQUAL(h.metrics.handshake_failures[PL_HS_NOT_FOUND], 1);
    client_read();
    CU_ASSERT(h.eof); /* half-closed after the reply */
    close(h.client);
    h.client = -1;
    assert_gone();
    CU_ASSERT_EQUAL(stub.opens, 0);
    CU_ASSERT_EQUAL(stub.closeds, 0);
    teardown();
}

static void test_drain_calls_hook_and_sends_1001(void)
{
    setup();
    open_ws();
    pl_worker_drain(&h.w);
    CU_ASSERT_EQUAL(stub.drains, 1);
    CU_ASSERT(h.w.draining);
    CU_ASSERT_EQUAL(server_close_code(), PL_WS_CLOSE_GOING_AWAY);
    pl_worker_drain(&h.w); /* once only */
    CU_ASSERT_EQUAL(stub.drains, 1);
    client_close(PL_WS_CLOSE_GOING_AWAY);
    CU_ASSERT_EQUAL(stub.closeds, 1);
    assert_gone();
    teardown();
}

/* An upgrade that completes while draining is closed at once with 1001:
 * neither open nor closed runs. */
static void test_upgrade_while_draining_skips_open(void)
{
    setup();
    pl_worker_drain(&h.w);
    client_upgrade("/stub");
    CU_ASSERT(strncmp(client_head(), "HTTP/1.1 101 ", 13) == 0);
    CU_ASSERT_EQUAL(server_close_code(), PL_WS_CLOSE_GOING_AWAY);
    client_close(PL_WS_CLOSE_GOING_AWAY);
    assert_gone();
    CU_ASSERT_EQUAL(stub.opens, 0);
    CU_ASSERT_EQUAL(stub.closeds, 0);
    teardown();
}

/* Worker hooks: once per module however many paths it has, in order;
 * a failed start stops the modules already started. */
static int order[8], norder;
static int a_start(pl_worker_t *w)
{
    (void)w;
    order[norder++] = 1;
    return 0;
}
static void a_stop(pl_worker_t *w)
{
    (void)w;
    order[norder++] = -1;
}
static int b_start(pl_worker_t *w)
{
    (void)w;
    order[norder++] = 2;
    return -1;
}
static void b_stop(pl_worker_t *w)
{
    (void)w;
    order[norder++] = -2;
}

static void test_ops_table(void)
{
    static const pl_ws_ops_t a = {.name = "a", .worker_start = a_start, .worker_stop = a_stop};
    static const pl_ws_ops_t b = {.name = "b", .worker_start = b_start, .worker_stop = b_stop};
    pl_ops_clear();
    CU_ASSERT_EQUAL(pl_ops_register("/a", &a), 0);
    CU_ASSERT_EQUAL(pl_ops_register("/a2", &a), 0);
    CU_ASSERT_EQUAL(pl_ops_register("/b", &b), 0);
    CU_ASSERT_EQUAL(pl_ops_register("/a", &b), 0); /* shadowed: first wins */
    pl_http_req_t req;
    const char *get = "GET /a2?x=1 HTTP/1.1\r\nHost: t\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(pl_http_parse(get, strlen(get), &req), PL_OK);
    CU_ASSERT_PTR_EQUAL(pl_ops_by_id[pl_ops_find(&req)], &a);
    get = "GET /a HTTP/1.1\r\nHost: t\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(pl_http_parse(get, strlen(get), &req), PL_OK);
    CU_ASSERT_PTR_EQUAL(pl_ops_by_id[pl_ops_find(&req)], &a);
    get = "GET /c HTTP/1.1\r\nHost: t\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(pl_http_parse(get, strlen(get), &req), PL_OK);
    CU_ASSERT_EQUAL(pl_ops_find(&req), 0);

    pl_worker_t w = {0};
    norder = 0;
    CU_ASSERT_EQUAL(pl_ops_worker_start(&w), -1);
    CU_ASSERT_EQUAL(norder, 3);
    CU_ASSERT(order[0] == 1 && order[1] == 2 && order[2] == -1);

    pl_ops_clear();
    for (int i = 0; i < PL_OPS_MAX; i++)
        CU_ASSERT_EQUAL(pl_ops_register("/x", &a), 0);
    CU_ASSERT_EQUAL(pl_ops_register("/full", &a), -1);
    norder = 0;
    CU_ASSERT_EQUAL(pl_ops_worker_start(&w), 0);
    pl_ops_worker_stop(&w);
    CU_ASSERT(norder == 2 && order[0] == 1 && order[1] == -1);
    pl_ops_clear();
}

PL_UNIT_SUITE(conn, PL_TEST(test_upgrade_message_reply_close),
              PL_TEST(test_module_close_runs_closed_later),
              PL_TEST(test_binary_on_text_only_path_closes_1003),
              PL_TEST(test_peer_eof_runs_closed_once),
              PL_TEST(test_unknown_path_is_404_without_open),
              PL_TEST(test_drain_calls_hook_and_sends_1001),
              PL_TEST(test_upgrade_while_draining_skips_open), PL_TEST(test_ops_table))
