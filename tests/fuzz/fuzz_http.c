/*
 * libFuzzer target for the gateway's HTTP request head parser and upgrade
 * checks (gateway/net/http.c): no crash, no read outside the input, and the
 * result is consistent with parsing a prefix (what conn.c does while the
 * head arrives in pieces).
 */
#include "http.h"
#include "util.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, exactly size bytes, so ASan catches any overread */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    pl_http_req_t req;
    int r = pl_http_parse(buf, size, &req);
    assert(r == PL_OK || r == PL_AGAIN || r == 400 || r == 431);
    if (r == PL_AGAIN)
        assert(size < PL_HTTP_MAX_HEAD);
    if (r == PL_OK) {
        size_t h = req.head_len;
        assert(h > 0 && h <= size && h <= PL_HTTP_MAX_HEAD);
        const char *end = buf + h;
        assert(req.path >= buf && req.path + req.path_len <= end);
        if (req.key)
            assert(req.key >= buf && req.key + req.key_len <= end);
        if (req.origin)
            assert(req.origin >= buf && req.origin + req.origin_len <= end);
        if (req.version)
            assert(req.version >= buf && req.version + req.version_len <= end);
        if (req.query)
            assert(req.query >= buf && req.query + req.query_len <= end);

        char accept[29];
        enum pl_hs_reason reason;
        int s =
            pl_http_check_upgrade(&req, "https://a.example, https://b.example", accept, &reason);
        assert(s == 0 || s == 400 || s == 403 || s == 405 || s == 426);
        if (s == 0) {
            char resp[256];
            assert(pl_http_upgrade_response(resp, sizeof(resp), accept) > 0);
        } else {
            assert((unsigned)reason < PL_HS_NREASONS);
        }
        pl_http_check_upgrade(&req, NULL, accept, &reason);

        /* the same head, cut short by one byte, is incomplete */
        pl_http_req_t short_req;
        assert(pl_http_parse(buf, h - 1, &short_req) == PL_AGAIN);
        /* and exactly the head parses the same */
        pl_http_req_t exact;
        assert(pl_http_parse(buf, h, &exact) == PL_OK && exact.head_len == h);
    }
    free(buf);
    return 0;
}
