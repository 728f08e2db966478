/*
 * Client addresses, trusted_proxies CIDRs and the X-Forwarded-For rule
 * (see addr.h). inet_pton does the address syntax; this file only cuts
 * the text into items, ports and prefixes.
 */
#include "addr.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Trims spaces and tabs off both ends of s[0..*len). */
static const char *trim(const char *s, size_t *len)
{
    while (*len > 0 && is_space(*s)) {
        s++;
        (*len)--;
    }
    while (*len > 0 && is_space(s[*len - 1]))
        (*len)--;
    return s;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* A bare address (no brackets, no port) of at most 45 characters. */
static int parse_bare(const char *s, size_t len, pl_addr_t *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct in_addr a4;
    if (memchr(buf, ':', len) == NULL) {
        if (inet_pton(AF_INET, buf, &a4) != 1)
            return -1;
        memcpy(out->b, v4_prefix, 12);
        memcpy(out->b + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out->b) == 1 ? 0 : -1;
}

int pl_addr_parse(const char *s, size_t len, pl_addr_t *out)
{
    s = trim(s, &len);
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return -1;
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest > 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return -1;
        return parse_bare(s + 1, (size_t)(close - s - 1), out);
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL) {
        /* exactly one colon: IPv4 with a port */
        if (!all_digits(colon + 1, len - (size_t)(colon + 1 - s)))
            return -1;
        return parse_bare(s, (size_t)(colon - s), out) == 0 && pl_addr_is_v4(out) ? 0 : -1;
    }
    return parse_bare(s, len, out);
}

int pl_addr_from_sockaddr(const struct sockaddr *sa, pl_addr_t *out)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(out->b, v4_prefix, 12);
        memcpy(out->b + 12, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int pl_addr_is_v4(const pl_addr_t *a)
{
    return memcmp(a->b, v4_prefix, 12) == 0;
}

void pl_addr_format(const pl_addr_t *a, char out[PL_ADDR_STRLEN])
{
    if (pl_addr_is_v4(a)) {
        inet_ntop(AF_INET, a->b + 12, out, PL_ADDR_STRLEN);
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a->b, buf, sizeof(buf));
    snprintf(out, PL_ADDR_STRLEN, "[%s]", buf);
}

/* ---- CIDR lists ---- */

static void mask(pl_addr_t *a, unsigned bits)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        a->b[i] &= (uint8_t)(0xff00u >> keep);
    }
}

static int parse_cidr(const char *s, size_t len, pl_cidr_t *out)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (alen == 0 || s[0] == '[' || parse_bare(s, alen, &out->net) < 0)
        return -1;
    unsigned max = pl_addr_is_v4(&out->net) && memchr(s, ':', alen) == NULL ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        size_t blen = len - alen - 1;
        if (blen == 0 || blen > 3 || !all_digits(slash + 1, blen))
            return -1;
        bits = (unsigned)atoi(slash + 1);
        if (bits > max)
            return -1;
    }
    if (max == 32)
        bits += 96;
    pl_addr_t masked = out->net;
    mask(&masked, bits);
    if (memcmp(&masked, &out->net, sizeof(masked)) != 0)
        return -1; /* host bits under the prefix */
    out->bits = (uint8_t)bits;
    return 0;
}

int pl_cidr_list_parse(const char *s, pl_cidr_list_t *out, char *err, size_t errlen)
{
    *out = (pl_cidr_list_t){0};
    size_t cap = 0;
    const char *p = s ? s : "";
    while (*p) {
        while (*p == ',' || is_space(*p))
            p++;
        if (*p == '\0')
            break;
        size_t len = strcspn(p, ", \t");
        pl_cidr_t c;
        if (parse_cidr(p, len, &c) < 0) {
            snprintf(err, errlen, "'%.*s' is not an address or CIDR (1.2.3.0/24, fd00::/8)",
                     (int)(len > 64 ? 64 : len), p);
            pl_cidr_list_free(out);
            return -1;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 4;
            out->v = pl_xrealloc(out->v, cap * sizeof(*out->v));
        }
        out->v[out->n++] = c;
        p += len;
    }
    return 0;
}

void pl_cidr_list_free(pl_cidr_list_t *l)
{
    free(l->v);
    *l = (pl_cidr_list_t){0};
}

int pl_cidr_list_match(const pl_cidr_list_t *l, const pl_addr_t *a)
{
    for (size_t i = 0; i < l->n; i++) {
        pl_addr_t m = *a;
        mask(&m, l->v[i].bits);
        if (memcmp(&m, &l->v[i].net, sizeof(m)) == 0)
            return 1;
    }
    return 0;
}

/* ---- X-Forwarded-For ---- */

/* The X-Forwarded-For walk (see addr.h); 0 with *out, or -1. */
static int from_xff(const pl_cidr_list_t *trusted, const char *xff, size_t xff_len, pl_addr_t *out)
{
    int have = 0; /* *out holds the (trusted) hop right of the current item */
    size_t end = xff_len;
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t ilen = end - start;
        const char *item = trim(xff + start, &ilen);
        if (ilen > 0) { /* empty items ("a,,b") are skipped */
            pl_addr_t a;
            if (pl_addr_parse(item, ilen, &a) < 0)
                return have ? 0 : -1;
            *out = a;
            have = 1;
            if (!pl_cidr_list_match(trusted, &a))
                return 0;
        }
        if (start == 0)
            return have ? 0 : -1; /* all trusted: the leftmost */
        end = start - 1;
    }
}

int pl_addr_forwarded(const pl_cidr_list_t *trusted, const char *xff, size_t xff_len,
                      const char *xri, size_t xri_len, pl_addr_t *out)
{
    if (xff != NULL && from_xff(trusted, xff, xff_len, out) == 0)
        return 0;
    if (xri != NULL)
        return pl_addr_parse(xri, xri_len, out);
    return -1;
}
