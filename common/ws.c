/*
 * WebSocket codec, server side of RFC 6455: frame parsing with every
 * protocol check (text through the incremental UTF-8 validator of
 * utf8.c), frame header encoding and the handshake accept key. No I/O and
 * no allocation: the caller owns the buffers, so the same code runs in the
 * gateway, the unit tests and the fuzzer.
 */
#include "ws.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

/* ---- frames ---- */

#define B0_FIN 0x80
#define B0_RSV 0x70
#define B1_MASK 0x80

void pl_ws_parser_init(pl_ws_parser_t *p, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
}

int pl_ws_close_code_valid(uint16_t code)
{
    /* 1004-1006 and 1015 are reserved or must never be sent on the wire;
     * 1012-1014 were registered with IANA after the RFC. 3000-4999 are for
     * libraries and applications. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static int opcode_known(uint8_t op)
{
    return op <= PL_WS_BINARY || (op >= PL_WS_CLOSE && op <= PL_WS_PONG);
}

static void unmask(uint8_t *d, uint64_t n, const uint8_t key[4])
{
    uint8_t k8[8];
    uint64_t m, w;
    uint64_t i = 0;

    /* The key repeats every 4 bytes, so 8 bytes of it line up with any
     * 8-byte step from the payload start, whatever the byte order. */
    memcpy(k8, key, 4);
    memcpy(k8 + 4, key, 4);
    memcpy(&m, k8, 8);
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, d + i, 8);
        w ^= m;
        memcpy(d + i, &w, 8);
    }
    for (; i < n; i++)
        d[i] ^= key[i & 3];
}

static int parse_close(pl_ws_frame_t *f)
{
    if (f->len == 0) {
        f->close_code = 1005; /* "no status received", reported, never sent */
        f->reason = f->payload;
        f->reason_len = 0;
        return PL_OK;
    }
    if (f->len == 1)
        return PL_WS_CLOSE_PROTOCOL;
    f->close_code = (uint16_t)(f->payload[0] << 8 | f->payload[1]);
    if (!pl_ws_close_code_valid(f->close_code))
        return PL_WS_CLOSE_PROTOCOL;
    f->reason = f->payload + 2;
    f->reason_len = (size_t)f->len - 2;
    if (pl_utf8_validate(f->reason, f->reason_len) < 0)
        return PL_WS_CLOSE_BAD_DATA;
    return PL_OK;
}

/*
 * Checks run in the order their bytes arrive and nothing is changed until
 * the whole frame is present, so calling again with a longer buffer gives
 * either AGAIN or the same final answer, and the UTF-8 state is fed once.
 */
int pl_ws_parse(pl_ws_parser_t *p, uint8_t *buf, size_t len, pl_ws_frame_t *out, size_t *consumed)
{
    if (len < 2)
        return PL_AGAIN;

    uint8_t b0 = buf[0], b1 = buf[1];
    uint8_t op = b0 & 0x0F;
    int fin = (b0 & B0_FIN) != 0;
    int control = (op & 0x08) != 0;
    uint64_t plen = b1 & 0x7F;

    if (b0 & B0_RSV) /* no extension negotiated gives them a meaning */
        return PL_WS_CLOSE_PROTOCOL;
    if (!opcode_known(op))
        return PL_WS_CLOSE_PROTOCOL;
    if (!(b1 & B1_MASK)) /* 5.1: a client MUST mask every frame */
        return PL_WS_CLOSE_PROTOCOL;
    if (control) {
        if (!fin || plen > 125) /* 5.5: control frames are short and unfragmented */
            return PL_WS_CLOSE_PROTOCOL;
    } else if (op == PL_WS_CONT) {
        if (p->msg_opcode == 0)
            return PL_WS_CLOSE_PROTOCOL;
    } else if (p->msg_opcode != 0) { /* new message before the last one ended */
        return PL_WS_CLOSE_PROTOCOL;
    }

    size_t hlen = 2;
    if (plen == 126) {
        if (len < 4)
            return PL_AGAIN;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        if (plen < 126) /* 5.2: the minimal number of bytes MUST be used */
            return PL_WS_CLOSE_PROTOCOL;
        hlen = 4;
    } else if (plen == 127) {
        if (len < 10)
            return PL_AGAIN;
        plen = 0;
        for (int i = 2; i < 10; i++)
            plen = plen << 8 | buf[i];
        if (plen >> 63) /* the most significant bit MUST be 0 */
            return PL_WS_CLOSE_PROTOCOL;
        if (plen <= 0xFFFF)
            return PL_WS_CLOSE_PROTOCOL;
        hlen = 10;
    }

    /* Judge the declared length now, so a client cannot make us buffer a
     * frame we would refuse anyway. Written to avoid overflow; the first
     * test only matters if a caller lowered max_message mid-message. */
    if (!control && (p->msg_len > p->max_message || plen > p->max_message - p->msg_len))
        return PL_WS_CLOSE_TOO_BIG;

    if (len - hlen < 4)
        return PL_AGAIN;
    const uint8_t *key = buf + hlen;
    hlen += 4;
    if ((uint64_t)(len - hlen) < plen)
        return PL_AGAIN;

    /* The whole frame is here: from now on each frame is seen once. */
    memset(out, 0, sizeof(*out));
    out->opcode = op;
    out->fin = (uint8_t)fin;
    out->payload = buf + hlen;
    out->len = plen;
    unmask(out->payload, plen, key);
    *consumed = hlen + (size_t)plen;

    if (control)
        return op == PL_WS_CLOSE ? parse_close(out) : PL_OK;

    uint8_t mop = op == PL_WS_CONT ? p->msg_opcode : op;
    out->msg_opcode = mop;
    if (mop == PL_WS_TEXT) {
        if (op == PL_WS_TEXT)
            memset(&p->utf8, 0, sizeof(p->utf8));
        if (pl_utf8_feed(&p->utf8, out->payload, (size_t)plen) < 0)
            return PL_WS_CLOSE_BAD_DATA;
        if (fin && !pl_utf8_complete(&p->utf8))
            return PL_WS_CLOSE_BAD_DATA;
    }
    if (fin) {
        p->msg_len = 0;
        p->msg_opcode = 0;
    } else {
        p->msg_len += plen;
        p->msg_opcode = mop;
    }
    return PL_OK;
}

/* ---- encoding ---- */

/* Writes byte 1 and the extended length; returns the bytes written. */
static size_t put_len(uint8_t *out, uint8_t maskbit, uint64_t len)
{
    if (len < 126) {
        out[0] = maskbit | (uint8_t)len;
        return 1;
    }
    if (len <= 0xFFFF) {
        out[0] = maskbit | 126;
        out[1] = (uint8_t)(len >> 8);
        out[2] = (uint8_t)len;
        return 3;
    }
    out[0] = maskbit | 127;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 9;
}

size_t pl_ws_header(uint8_t *out, uint8_t opcode, uint64_t len)
{
    out[0] = B0_FIN | (opcode & 0x0F);
    return 1 + put_len(out + 1, 0, len);
}

size_t pl_ws_client_frame(uint8_t *out, uint8_t opcode, int fin, const uint8_t *payload, size_t len,
                          uint32_t mask)
{
    size_t n = 1;
    out[0] = (fin ? B0_FIN : 0) | (opcode & 0x0F);
    n += put_len(out + 1, B1_MASK, len);
    uint8_t *key = out + n;
    key[0] = (uint8_t)(mask >> 24);
    key[1] = (uint8_t)(mask >> 16);
    key[2] = (uint8_t)(mask >> 8);
    key[3] = (uint8_t)mask;
    n += 4;
    if (len > 0)
        memcpy(out + n, payload, len);
    unmask(out + n, len, key); /* masking is the same XOR */
    return n + len;
}

/* ---- handshake ---- */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int pl_ws_accept_key(const char *key, size_t keylen, char out[29])
{
    /* 16 bytes encode to exactly 22 symbols and "==". */
    if (keylen != 24 || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++)
        if (!b64_char(key[i]))
            return -1;

    uint8_t buf[24 + sizeof(ws_guid) - 1];
    uint8_t digest[SHA_DIGEST_LENGTH];
    memcpy(buf, key, 24);
    memcpy(buf + 24, ws_guid, sizeof(ws_guid) - 1);
    SHA1(buf, sizeof(buf), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    return 0;
}
