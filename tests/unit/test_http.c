/*
 * http.c: the request head parser and the upgrade checks, fed whole, in
 * pieces and one byte at a time.
 */
#include "http.h"
#include "unit.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static const char *upgrade_req = "GET /ws HTTP/1.1\r\n"
                                 "Host: example\r\n"
                                 "Upgrade: websocket\r\n"
                                 "Connection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: " KEY "\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"
                                 "\r\n";

static int parse(const char *s, pl_http_req_t *req)
{
    return pl_http_parse(s, strlen(s), req);
}

/* Parses and runs the upgrade checks; returns the status (0 = upgrade). */
static int check(const char *s, const char *origins, enum pl_hs_reason *reason)
{
    pl_http_req_t req;
    int r = parse(s, &req);
    if (r != PL_OK)
        return r;
    char accept[29];
    enum pl_hs_reason dummy;
    return pl_http_check_upgrade(&req, origins, accept, reason ? reason : &dummy);
}

static void test_valid_upgrade(void)
{
    pl_http_req_t req;
    CU_ASSERT_EQUAL_FATAL(parse(upgrade_req, &req), PL_OK);
    CU_ASSERT_EQUAL(req.head_len, strlen(upgrade_req));
    CU_ASSERT(pl_http_path_is(&req, "/ws"));
    CU_ASSERT(req.is_get && req.http11 && req.upgrade_websocket && req.connection_upgrade);
    char accept[29];
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(pl_http_check_upgrade(&req, "", accept, &reason), 0);
    CU_ASSERT_STRING_EQUAL(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 1.3 */
    char resp[256];
    size_t n = pl_http_upgrade_response(resp, sizeof(resp), accept);
    CU_ASSERT(n > 0 && strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    CU_ASSERT(strncmp(resp, "HTTP/1.1 101 ", 13) == 0);
}

static void test_case_insensitive_headers(void)
{
    const char *s = "GET /ws HTTP/1.1\r\nhOsT: x\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"
                    "sec-websocket-key:" KEY "  \r\nSEC-WEBSOCKET-VERSION:13\r\n\r\n";
    CU_ASSERT_EQUAL(check(s, NULL, NULL), 0);
}

static void test_connection_token_list(void)
{
    const char *s = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    CU_ASSERT_EQUAL(check(s, NULL, NULL), 0);
    /* "upgrades" is not the token "upgrade" */
    const char *t = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive,upgrades\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(check(t, NULL, &reason), 400);
    CU_ASSERT_EQUAL(reason, PL_HS_NOT_UPGRADE);
}

static void test_missing_upgrade(void)
{
    const char *s = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(check(s, NULL, &reason), 400);
    CU_ASSERT_EQUAL(reason, PL_HS_NOT_UPGRADE);
}

static void test_missing_key(void)
{
    const char *s = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(check(s, NULL, &reason), 400);
    CU_ASSERT_EQUAL(reason, PL_HS_BAD_KEY);
}

static void test_bad_key(void)
{
    enum pl_hs_reason reason;
    /* base64 of 15 bytes, not 16 */
    const char *s = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\nSec-WebSocket-Version: 13\r\n\r\n";
    CU_ASSERT_EQUAL(check(s, NULL, &reason), 400);
    CU_ASSERT_EQUAL(reason, PL_HS_BAD_KEY);
    const char *t =
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: not base64 at all!!!!!\r\nSec-WebSocket-Version: 13\r\n\r\n";
    CU_ASSERT_EQUAL(check(t, NULL, &reason), 400);
    const char *dup = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Key: " KEY "\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n";
    CU_ASSERT_EQUAL(check(dup, NULL, &reason), 400);
}

static void test_version_12_is_426(void)
{
    const char *s = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 12\r\n\r\n";
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(check(s, NULL, &reason), 426);
    CU_ASSERT_EQUAL(reason, PL_HS_BAD_VERSION);
    char head[512];
    size_t n =
        pl_http_head(head, sizeof(head), 426, "text/plain", 0, "Sec-WebSocket-Version: 13\r\n");
    CU_ASSERT(n > 0);
    CU_ASSERT(strstr(head, "HTTP/1.1 426 Upgrade Required\r\n") == head);
    CU_ASSERT(strstr(head, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    CU_ASSERT(strstr(head, "\r\nConnection: close\r\n") != NULL);
}

static void test_not_get(void)
{
    const char *s = "POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    CU_ASSERT_EQUAL(check(s, NULL, NULL), 405);
}

static void test_origin_list(void)
{
    char s[512];
    snprintf(s, sizeof(s), "%.*sOrigin: https://good.example\r\n\r\n", (int)strlen(upgrade_req) - 2,
             upgrade_req);
    CU_ASSERT_EQUAL(check(s, "https://a.example, https://good.example", NULL), 0);
    enum pl_hs_reason reason;
    CU_ASSERT_EQUAL(check(s, "https://a.example", &reason), 403);
    CU_ASSERT_EQUAL(reason, PL_HS_ORIGIN);
    CU_ASSERT_EQUAL(check(s, "", NULL), 0);
    /* no Origin: a non-browser client, allowed */
    CU_ASSERT_EQUAL(check(upgrade_req, "https://a.example", NULL), 0);
}

static void test_too_large_is_431(void)
{
    static char big[PL_HTTP_MAX_HEAD + 200];
    strcpy(big, "GET /ws HTTP/1.1\r\nX-Filler: ");
    size_t n = strlen(big);
    memset(big + n, 'a', sizeof(big) - n - 1);
    big[sizeof(big) - 1] = '\0';
    pl_http_req_t req;
    CU_ASSERT_EQUAL(pl_http_parse(big, sizeof(big) - 1, &req), 431);
    /* just under the limit, still incomplete: keep reading */
    CU_ASSERT_EQUAL(pl_http_parse(big, PL_HTTP_MAX_HEAD - 1, &req), PL_AGAIN);
    /* complete but larger than the limit */
    memcpy(big + sizeof(big) - 5, "\r\n\r\n", 4);
    CU_ASSERT_EQUAL(pl_http_parse(big, sizeof(big) - 1, &req), 431);
}

static void test_partial_is_again(void)
{
    pl_http_req_t req;
    size_t n = strlen(upgrade_req);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(pl_http_parse(upgrade_req, i, &req), PL_AGAIN);
    CU_ASSERT_EQUAL(pl_http_parse(upgrade_req, n, &req), PL_OK);
}

static void test_one_byte_at_a_time(void)
{
    /* as conn.c does it: append each byte to a buffer and parse it all */
    char buf[1024];
    size_t n = strlen(upgrade_req), len = 0;
    pl_http_req_t req;
    int r = PL_AGAIN;
    for (size_t i = 0; i < n && r == PL_AGAIN; i++) {
        buf[len++] = upgrade_req[i];
        r = pl_http_parse(buf, len, &req);
    }
    CU_ASSERT_EQUAL(r, PL_OK);
    CU_ASSERT_EQUAL(len, n);
    CU_ASSERT_EQUAL(req.head_len, n);
    CU_ASSERT_EQUAL(check(upgrade_req, NULL, NULL), 0);
}

static void test_trailing_bytes_not_in_head(void)
{
    char s[512];
    snprintf(s, sizeof(s), "%s\x81\x85", upgrade_req);
    pl_http_req_t req;
    CU_ASSERT_EQUAL(pl_http_parse(s, strlen(s), &req), PL_OK);
    CU_ASSERT_EQUAL(req.head_len, strlen(upgrade_req));
}

static void test_paths(void)
{
    pl_http_req_t req;
    CU_ASSERT_EQUAL_FATAL(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &req), PL_OK);
    CU_ASSERT(pl_http_path_is(&req, "/healthz"));
    CU_ASSERT(!pl_http_path_is(&req, "/metrics"));
    CU_ASSERT_EQUAL_FATAL(parse("GET /metrics?x=1 HTTP/1.0\n\n", &req), PL_OK);
    CU_ASSERT(pl_http_path_is(&req, "/metrics"));
    CU_ASSERT(!req.http11);
    CU_ASSERT_EQUAL(req.query_len, 3);
    CU_ASSERT_EQUAL_FATAL(parse("GET /nope HTTP/1.1\r\n\r\n", &req), PL_OK);
    CU_ASSERT(!pl_http_path_is(&req, "/ws"));
    CU_ASSERT(!pl_http_path_is(&req, "/healthz"));
    CU_ASSERT(!pl_http_path_is(&req, "")); /* an unset echo path never matches */
}

static void test_malformed_is_400(void)
{
    const char *bad[] = {
        "GET\r\n\r\n",
        "GET /ws\r\n\r\n",
        "GET ws HTTP/1.1\r\n\r\n",
        "GET /ws HTTP/2.0\r\n\r\n",
        "GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /ws HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET /ws HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "G(T /ws HTTP/1.1\r\n\r\n",
        "\r\n\r\n",
    };
    pl_http_req_t req;
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        int r = parse(bad[i], &req);
        if (r != 400)
            fprintf(stderr, "\n  case %zu: got %d\n", i, r);
        CU_ASSERT_EQUAL(r, 400);
    }
}

PL_UNIT_SUITE(http, PL_TEST(test_valid_upgrade), PL_TEST(test_case_insensitive_headers),
              PL_TEST(test_connection_token_list), PL_TEST(test_missing_upgrade),
              PL_TEST(test_missing_key), PL_TEST(test_bad_key), PL_TEST(test_version_12_is_426),
              PL_TEST(test_not_get), PL_TEST(test_origin_list), PL_TEST(test_too_large_is_431),
              PL_TEST(test_partial_is_again), PL_TEST(test_one_byte_at_a_time),
              PL_TEST(test_trailing_bytes_not_in_head), PL_TEST(test_paths),
              PL_TEST(test_malformed_is_400))
