/*
 * libFuzzer target for the WebSocket codec (common/ws.c).
 *
 * Input: one config byte (message size limit, chunking seed), then the byte
 * stream a client sends after the handshake. The stream is parsed three
 * ways: all at once, in random chunks through a buffer reallocated to its
 * exact size before every call (so ASan sees any read past len), and one
 * byte at a time. All three must yield the same frames and the same final
 * verdict, and the whole-buffer run is checked step by step against a slow
 * reference model of RFC 6455 written independently below. The UTF-8
 * validator is also compared with a plain decoder over random splits.
 */
#include "util.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- reference UTF-8: decode each sequence, then judge the code point ---- */

/* Returns -1 if s is invalid before its end; otherwise 0 and *tail is where
 * an unfinished last sequence starts (n if none). */
static int ref_utf8(const uint8_t *s, size_t n, size_t *tail)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        size_t have = n - i < len ? n - i : len;
        for (size_t j = 1; j < have; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return -1;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (have < len) { /* judged by the caller, with completions */
            *tail = i;
            return 0;
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        i += len;
    }
    *tail = n;
    return 0;
}

static int ref_utf8_valid(const uint8_t *s, size_t n)
{
    size_t tail;
    return ref_utf8(s, n, &tail) == 0 && tail == n;
}

/* Can this unfinished sequence (1-3 bytes) still become a valid one? Any
 * allowed continuation range contains 0x80, 0x90 or 0xA0. */
static int ref_tail_viable(const uint8_t *t, size_t n)
{
    static const uint8_t firsts[] = {0x80, 0x90, 0xA0};
    uint8_t s[8];
    memcpy(s, t, n);
    for (size_t f = 0; f < 3; f++) {
        for (size_t add = 1; n + add <= 4; add++) {
            s[n] = firsts[f];
            for (size_t j = 1; j < add; j++)
                s[n + j] = 0x80;
            if (ref_utf8_valid(s, n + add))
                return 1;
        }
    }
    return 0;
}

/* ---- reference frame model ---- */

/* RFC 6455 7.4.1 plus the IANA registry (1012-1014). */
static int ref_close_ok(uint32_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c < 5000);
}

struct ref {
    uint64_t max, msg_len;
    uint8_t msg_op; /* 0, 1 or 2 */
    uint8_t tail[4];
    size_t tail_len; /* unfinished code point carried across text fragments */
};

struct ref_frame {
    uint8_t opcode, fin, msg_op;
    uint64_t len;
    size_t used;
    uint16_t close_code;
    size_t reason_len;
};

/* Judges the frame at in[0..avail) the way RFC 6455 does; pay receives the
 * unmasked payload. Checks go header first, size limit next, content last,
 * the order ws.c documents. Updates r only on success. */
static int ref_parse(struct ref *r, const uint8_t *in, size_t avail, uint8_t *pay,
                     struct ref_frame *out)
{
    if (avail < 2)
        return PL_AGAIN;
    int fin = in[0] >> 7, rsv = (in[0] >> 4) & 7, op = in[0] & 15, masked = in[1] >> 7;
    uint64_t len = in[1] & 127;
    int is_control = op >= 8;
    int known = op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10;

    if (rsv || !known || !masked)
        return 1002;
    if (is_control && (!fin || len >= 126))
        return 1002;
    if (op == 0 && r->msg_op == 0)
        return 1002;
    if ((op == 1 || op == 2) && r->msg_op != 0)
        return 1002;

    size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
    if (avail < 2 + ext)
        return PL_AGAIN;
    if (ext) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len * 256 + in[2 + i];
        if (ext == 2 && len < 126)
            return 1002;
        if (ext == 8 && (len >= (1ULL << 63) || len < 65536))
            return 1002;
    }
    if (!is_control && r->msg_len + (unsigned __int128)len > r->max)
        return 1009;
    size_t hdr = 2 + ext + 4;
    if (avail < hdr || avail - hdr < len)
        return PL_AGAIN;
    for (size_t i = 0; i < len; i++)
        pay[i] = in[hdr + i] ^ in[2 + ext + i % 4];

    memset(out, 0, sizeof(*out));
    out->opcode = (uint8_t)op;
    out->fin = (uint8_t)fin;
    out->len = len;
    out->used = hdr + (size_t)len;
    if (op == 8) {
        if (len == 0) {
            out->close_code = 1005;
            return 0;
        }
        if (len == 1)
            return 1002;
        uint16_t code = (uint16_t)(pay[0] * 256 + pay[1]);
        if (!ref_close_ok(code))
            return 1002;
        if (!ref_utf8_valid(pay + 2, (size_t)len - 2))
            return 1007;
        out->close_code = code;
        out->reason_len = (size_t)len - 2;
        return 0;
    }
    if (is_control)
        return 0;

    uint8_t mop = op == 0 ? r->msg_op : (uint8_t)op;
    out->msg_op = mop;
    uint8_t carry[4];
    size_t carry_len = 0;
    if (mop == 1) {
        /* The unfinished code point from earlier fragments, then this one. */
        size_t prev = op == 1 ? 0 : r->tail_len;
        uint8_t *cat = malloc(prev + (size_t)len + 1);
        memcpy(cat, r->tail, prev);
        memcpy(cat + prev, pay, (size_t)len);
        size_t n = prev + (size_t)len, tail;
        int bad = ref_utf8(cat, n, &tail) < 0 ||
                  (tail < n && (fin || !ref_tail_viable(cat + tail, n - tail)));
        if (!bad) {
            carry_len = n - tail;
            memcpy(carry, cat + tail, carry_len);
        }
        free(cat);
        if (bad)
            return 1007;
    }
    if (fin) {
        r->msg_op = 0;
        r->msg_len = 0;
        r->tail_len = 0;
    } else {
        r->msg_op = mop;
        r->msg_len += len;
        memcpy(r->tail, carry, carry_len);
        r->tail_len = carry_len;
    }
    return 0;
}

/* ---- the codec under test ---- */

/* What a run saw: one entry per frame, then the verdict and where the
 * unparsed bytes start. */
struct ev {
    size_t off, used;
    uint64_t len, hash;
    uint16_t close_code;
    size_t reason_len;
    uint8_t opcode, fin, msg_opcode;
};

struct run {
    struct ev *ev;
    size_t nev;
    int rc;
    size_t off;
};

static uint64_t fnv(const uint8_t *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* Invariants of one successful parse, whatever the input. */
static void check_frame(const pl_ws_parser_t *before, const pl_ws_parser_t *p, const uint8_t *buf,
                        size_t len, const pl_ws_frame_t *f, size_t used)
{
    CHECK(used >= 6 && used <= len);
    CHECK(f->payload >= buf + 6 && f->payload + f->len == buf + used);
    CHECK(f->fin <= 1);
    if (f->opcode >= 8) {
        CHECK(f->opcode <= PL_WS_PONG && f->fin && f->len <= 125 && f->msg_opcode == 0);
        CHECK(p->msg_opcode == before->msg_opcode && p->msg_len == before->msg_len);
        if (f->opcode == PL_WS_CLOSE) {
            CHECK((f->close_code == 1005) == (f->len == 0));
            CHECK(f->close_code == 1005 || pl_ws_close_code_valid(f->close_code));
            CHECK(f->reason_len == (f->len ? f->len - 2 : 0));
            CHECK(pl_utf8_validate(f->reason, f->reason_len) == 0);
        }
    } else {
        CHECK(f->opcode <= PL_WS_BINARY);
        CHECK(f->msg_opcode == PL_WS_TEXT || f->msg_opcode == PL_WS_BINARY);
        CHECK(f->opcode == PL_WS_CONT || f->opcode == f->msg_opcode);
        CHECK(before->msg_len + f->len <= p->max_message);
        CHECK(p->msg_opcode == (f->fin ? 0 : f->msg_opcode));
        CHECK(p->msg_len == (f->fin ? 0 : before->msg_len + f->len));
    }
}

static struct ev make_ev(const pl_ws_frame_t *f, size_t off, size_t used)
{
    struct ev e = {off,           used,          f->len,    fnv(f->payload, f->len),
                   f->close_code, f->reason_len, f->opcode, f->fin,
                   f->msg_opcode};
    return e;
}

/* Whole buffer at once, checked against the reference model. */
static void run_whole(const uint8_t *in, size_t n, uint64_t max, struct run *out)
{
    uint8_t *buf = malloc(n ? n : 1);
    uint8_t *pay = malloc(n ? n : 1);
    memcpy(buf, in, n);
    pl_ws_parser_t p;
    pl_ws_parser_init(&p, max);
    struct ref r = {.max = max};
    size_t off = 0;

    for (;;) {
        pl_ws_parser_t before = p;
        pl_ws_frame_t f;
        struct ref_frame rf;
        size_t used = 0;
        int rc = pl_ws_parse(&p, buf + off, n - off, &f, &used);
        int want = ref_parse(&r, in + off, n - off, pay, &rf);
        if (rc != want)
            fprintf(stderr, "at %zu: codec %d, reference %d\n", off, rc, want);
        CHECK(rc == want);
        if (rc != PL_OK) {
            CHECK(rc == PL_AGAIN || (rc >= 1000 && rc <= 1011));
            out->rc = rc;
            break;
        }
        check_frame(&before, &p, buf + off, n - off, &f, used);
        CHECK(used == rf.used && f.opcode == rf.opcode && f.fin == rf.fin);
        CHECK(f.len == rf.len && f.msg_opcode == rf.msg_op);
        CHECK(memcmp(f.payload, pay, (size_t)f.len) == 0);
        CHECK(f.close_code == rf.close_code && f.reason_len == rf.reason_len);
        CHECK(p.msg_opcode == r.msg_op && p.msg_len == r.msg_len);
        out->ev[out->nev++] = make_ev(&f, off, used);
        off += used;
    }
    out->off = off;
    free(buf);
    free(pay);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random chunks into a buffer kept at its exact size. */
static void run_chunks(const uint8_t *in, size_t n, uint64_t max, uint64_t seed, struct run *out)
{
    uint8_t *cb = malloc(1);
    size_t clen = 0, fed = 0, base = 0;
    pl_ws_parser_t p;
    pl_ws_parser_init(&p, max);

    for (;;) {
        pl_ws_parser_t before = p;
        pl_ws_frame_t f;
        size_t used = 0;
        int rc = pl_ws_parse(&p, cb, clen, &f, &used);
        if (rc == PL_OK) {
            check_frame(&before, &p, cb, clen, &f, used);
            out->ev[out->nev++] = make_ev(&f, base, used);
            memmove(cb, cb + used, clen - used);
            clen -= used;
            base += used;
            cb = realloc(cb, clen ? clen : 1);
            continue;
        }
        if (rc != PL_AGAIN || fed == n) {
            out->rc = rc;
            break;
        }
        uint64_t x = xorshift(&seed);
        size_t k;
        switch (x & 3) {
        case 0:
            k = 1;
            break;
        case 1:
            k = 1 + (x >> 8) % 8;
            break;
        case 2:
            k = 1 + (x >> 8) % 300;
            break;
        default:
            k = n - fed;
            break;
        }
        if (k > n - fed)
            k = n - fed;
        cb = realloc(cb, clen + k);
        memcpy(cb + clen, in + fed, k);
        clen += k;
        fed += k;
    }
    out->off = base;
    free(cb);
}

/* One byte at a time: a frame must complete exactly with its last byte. */
static void run_bytes(const uint8_t *in, size_t n, uint64_t max, struct run *out)
{
    uint8_t *buf = malloc(n ? n : 1);
    memcpy(buf, in, n);
    size_t base = 0, avail = 0;
    pl_ws_parser_t p;
    pl_ws_parser_init(&p, max);

    for (;;) {
        pl_ws_frame_t f;
        size_t used = 0;
        int rc = pl_ws_parse(&p, buf + base, avail - base, &f, &used);
        if (rc == PL_OK) {
            CHECK(used == avail - base);
            out->ev[out->nev++] = make_ev(&f, base, used);
            base += used;
            continue;
        }
        if (rc != PL_AGAIN || avail == n) {
            out->rc = rc;
            break;
        }
        avail++;
    }
    out->off = base;
    free(buf);
}

static void same_run(const struct run *a, const struct run *b)
{
    CHECK(a->rc == b->rc && a->off == b->off && a->nev == b->nev);
    for (size_t i = 0; i < a->nev; i++) {
        const struct ev *x = &a->ev[i], *y = &b->ev[i];
        CHECK(x->off == y->off && x->used == y->used && x->len == y->len);
        CHECK(x->hash == y->hash && x->close_code == y->close_code);
        CHECK(x->reason_len == y->reason_len && x->opcode == y->opcode);
        CHECK(x->fin == y->fin && x->msg_opcode == y->msg_opcode);
    }
}

/* The validator, fed in random splits, agrees with the plain decoder. */
static void check_utf8(const uint8_t *s, size_t n, uint64_t seed)
{
    int want = ref_utf8_valid(s, n) ? 0 : -1;
    CHECK(pl_utf8_validate(s, n) == want);
    pl_utf8_t u = {0};
    size_t i = 0, start = 0; /* s[0..start) is known to be whole code points */
    int ok = 1;
    while (i < n && ok) {
        size_t k = 1 + xorshift(&seed) % 16;
        if (k > n - i)
            k = n - i;
        size_t tail;
        /* Rejected exactly when the plain decoder says no completion of the
         * bytes so far can be valid. */
        int viable = ref_utf8(s + start, i + k - start, &tail) == 0;
        if (viable) {
            tail += start;
            viable = tail == i + k || ref_tail_viable(s + tail, i + k - tail);
            start = tail;
        }
        ok = pl_utf8_feed(&u, s + i, k) == 0;
        CHECK(ok == viable);
        i += k;
    }
    CHECK((ok && pl_utf8_complete(&u) ? 0 : -1) == want);
}

/* Encoding helpers round-trip through the parser. */
static void check_encoders(const uint8_t *d, size_t n)
{
    uint8_t hdr[PL_WS_MAX_HEADER];
    size_t h = pl_ws_header(hdr, PL_WS_BINARY, n);
    CHECK(h == (n < 126 ? 2 : n < 65536 ? 4 : 10) && hdr[0] == 0x82 && !(hdr[1] & 0x80));

    uint32_t mask = n >= 4 ? (uint32_t)d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3] : 0;
    uint8_t *fr = malloc(n + 14);
    size_t flen = pl_ws_client_frame(fr, PL_WS_BINARY, 1, d, n, mask);
    CHECK(flen == h + 4 + n);
    pl_ws_parser_t p;
    pl_ws_frame_t f;
    size_t used;
    pl_ws_parser_init(&p, UINT64_MAX);
    CHECK(pl_ws_parse(&p, fr, flen, &f, &used) == PL_OK);
    CHECK(used == flen && f.len == n && memcmp(f.payload, d, n) == 0);
    free(fr);

    char out[29];
    size_t klen = n < 30 ? n : 30;
    if (pl_ws_accept_key((const char *)d, klen, out) == 0)
        CHECK(klen == 24 && strlen(out) == 28);
}

/* Once per process: every close code against the reference table (a fuzzer
 * is unlikely to hit one exact 16-bit value through the mask). */
static void check_close_codes(void)
{
    static int done;
    if (done++)
        return;
    for (uint32_t c = 0; c <= 0xFFFF; c++)
        CHECK(!pl_ws_close_code_valid((uint16_t)c) == !ref_close_ok(c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[] = {125, 1000, 65536, UINT64_MAX};
    check_close_codes();
    if (size < 1)
        return 0;
    uint64_t max = limits[data[0] & 3];
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)data[0] << 32) ^ size;
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    struct run a = {0}, b = {0}, c = {0};
    a.ev = malloc((n / 6 + 1) * sizeof(struct ev));
    b.ev = malloc((n / 6 + 1) * sizeof(struct ev));
    c.ev = malloc((n / 6 + 1) * sizeof(struct ev));
    run_whole(in, n, max, &a);
    run_chunks(in, n, max, seed, &b);
    run_bytes(in, n, max, &c);
    same_run(&a, &b);
    same_run(&a, &c);
    free(a.ev);
    free(b.ev);
    free(c.ev);

    check_utf8(in, n, seed);
    check_encoders(in, n);
    return 0;
}
