/*
 * Client addresses: one 16-byte form for IPv4 and IPv6 (IPv4 as the
 * mapped ::ffff:a.b.c.d, so a v4 peer on a dual-stack socket and a v4
 * CIDR compare equal), the trusted_proxies CIDR list, and the rule that
 * picks the client's address out of X-Forwarded-For / X-Real-IP when the
 * peer is a trusted proxy. Pure: no sockets, no libevent, so the unit
 * tests (tests/unit/test_addr.c) and both programs could use it.
 */
#ifndef PL_ADDR_H
#define PL_ADDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

typedef struct pl_addr {
    uint8_t b[16]; /* network order; IPv4 as ::ffff:a.b.c.d */
} pl_addr_t;

#define PL_ADDR_STRLEN 48 /* "[" IPv6 "]" and a NUL, with room */

/* Parses one address, optionally with a port: "1.2.3.4", "1.2.3.4:80",
 * "::1", "[::1]", "[::1]:80". Surrounding spaces and tabs are skipped.
 * Returns 0, or -1 if s[0..len) is not one. */
int pl_addr_parse(const char *s, size_t len, pl_addr_t *out);
/* From an accepted socket's address (AF_INET or AF_INET6); -1 otherwise. */
int pl_addr_from_sockaddr(const struct sockaddr *sa, pl_addr_t *out);
int pl_addr_is_v4(const pl_addr_t *a);
/* "1.2.3.4" or "[2001:db8::1]" (bracketed, so a port can never be read
 * into it); out has PL_ADDR_STRLEN bytes. */
void pl_addr_format(const pl_addr_t *a, char out[PL_ADDR_STRLEN]);

typedef struct pl_cidr {
    pl_addr_t net; /* masked to bits */
    uint8_t bits;  /* prefix length in the 128-bit form (an IPv4 /n is 96+n) */
} pl_cidr_t;

/* A list of CIDRs; owns v (pl_cidr_list_free). Empty: n == 0, v == NULL. */
typedef struct pl_cidr_list {
    pl_cidr_t *v;
    size_t n;
} pl_cidr_list_t;

/* Parses "10.0.0.0/8, 192.168.1.1 fd00::/8" (commas and/or spaces; an
 * address without /n is a single host). Returns 0, or -1 with the bad
 * item named in err (then *out is empty). Host bits set under the prefix
 * are an error ("10.0.0.1/8"): they usually mean a typo. */
int pl_cidr_list_parse(const char *s, pl_cidr_list_t *out, char *err, size_t errlen);
void pl_cidr_list_free(pl_cidr_list_t *l);
/* True if a is inside one of the list's CIDRs. */
int pl_cidr_list_match(const pl_cidr_list_t *l, const pl_addr_t *a);

/*
 * The client behind a trusted proxy. xff is the X-Forwarded-For value
 * (NULL if absent), xri X-Real-IP's. X-Forwarded-For is read from the
 * right: every proxy appends the address it got the request from, so the
 * entries a client wrote itself are on the left and cannot be trusted;
 * the first entry from the right that is not a trusted proxy is the client
 * (all trusted: the leftmost). Without a usable X-Forwarded-For, X-Real-IP. An
 * entry that does not parse ends the walk: the address right of it (a
 * trusted proxy's) is used if there is one, else none.
 * Returns 0 with *out set, or -1 when the headers name no usable address
 * (the caller keeps the peer's).
 */
int pl_addr_forwarded(const pl_cidr_list_t *trusted, const char *xff, size_t xff_len,
                      const char *xri, size_t xri_len, pl_addr_t *out);

#endif
