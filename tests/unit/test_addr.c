/*
 * addr.c: address parsing and formatting, trusted_proxies CIDR lists, and
 * the X-Forwarded-For / X-Real-IP rule (rightmost untrusted hop).
 */
#include "addr.h"
#include "unit.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static pl_addr_t A(const char *s)
{
    pl_addr_t a;
    memset(&a, 0xee, sizeof(a));
    CU_ASSERT_EQUAL_FATAL(pl_addr_parse(s, strlen(s), &a), 0);
    return a;
}

static int parses(const char *s)
{
    pl_addr_t a;
    return pl_addr_parse(s, strlen(s), &a) == 0;
}

static const char *fmt(const pl_addr_t *a)
{
    static char buf[PL_ADDR_STRLEN];
    pl_addr_format(a, buf);
    return buf;
}

static void test_parse_forms(void)
{
    pl_addr_t a = A("203.0.113.9");
    CU_ASSERT(pl_addr_is_v4(&a));
    CU_ASSERT_STRING_EQUAL(fmt(&a), "203.0.113.9");
    CU_ASSERT(memcmp(&a, &(pl_addr_t){{0}}, 16) != 0);
    pl_addr_t b = A(" 203.0.113.9:443\t");
    CU_ASSERT(memcmp(&a, &b, sizeof(a)) == 0);
    b = A("[::ffff:203.0.113.9]:80"); /* a v4 peer on a dual-stack socket */
    CU_ASSERT(memcmp(&a, &b, sizeof(a)) == 0);
    pl_addr_t c = A("2001:db8::1");
    CU_ASSERT(!pl_addr_is_v4(&c));
    CU_ASSERT_STRING_EQUAL(fmt(&c), "[2001:db8::1]");
    pl_addr_t d = A("[2001:db8::1]:8080");
    CU_ASSERT(memcmp(&c, &d, sizeof(c)) == 0);
    d = A("[2001:db8::1]");
    CU_ASSERT(memcmp(&c, &d, sizeof(c)) == 0);
    /* the formatted form parses back (conn.c keeps it in c->peer) */
    d = A(fmt(&c));
    CU_ASSERT(memcmp(&c, &d, sizeof(c)) == 0);
    CU_ASSERT_STRING_EQUAL(fmt(&(pl_addr_t){{0}}), "[::]");
}

static void test_parse_rejects(void)
{
    const char *bad[] = {"",
                         " ",
                         "1.2.3",
                         "1.2.3.4.5",
                         "256.1.1.1",
                         "1.2.3.4:",
                         "1.2.3.4:x",
                         "1.2.3.4:123456",
                         "[::1",
                         "[::1]x",
                         "[::1]:",
                         "::1:80:x:",
                         "unknown",
                         "1.2.3.4 5.6.7.8",
                         "[1.2.3.4]:x",
                         "fe80::1%eth0"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        if (parses(bad[i]))
            fprintf(stderr, "\n  parsed: '%s'\n", bad[i]);
        CU_ASSERT(!parses(bad[i]));
    }
    /* an unbracketed v6 is taken whole: its last group is not a port */
    pl_addr_t a = A("::5:1:80");
    CU_ASSERT_STRING_EQUAL(fmt(&a), "[::5:1:80]");
}

static void test_from_sockaddr(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(5)};
    inet_pton(AF_INET, "127.0.0.2", &in.sin_addr);
    pl_addr_t a;
    CU_ASSERT_EQUAL(pl_addr_from_sockaddr((struct sockaddr *)&in, &a), 0);
    CU_ASSERT_STRING_EQUAL(fmt(&a), "127.0.0.2");
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    CU_ASSERT_EQUAL(pl_addr_from_sockaddr((struct sockaddr *)&in6, &a), 0);
    CU_ASSERT_STRING_EQUAL(fmt(&a), "[::1]");
    struct sockaddr un = {.sa_family = AF_UNIX};
    CU_ASSERT_EQUAL(pl_addr_from_sockaddr(&un, &a), -1);
}

static pl_cidr_list_t L(const char *s)
{
    pl_cidr_list_t l;
    char err[128];
    CU_ASSERT_EQUAL_FATAL(pl_cidr_list_parse(s, &l, err, sizeof(err)), 0);
    return l;
}

static int in(const pl_cidr_list_t *l, const char *addr)
{
    pl_addr_t a = A(addr);
    return pl_cidr_list_match(l, &a);
}

static void test_cidr_lists(void)
{
    pl_cidr_list_t l = L("10.0.0.0/8, 192.168.1.7  fd00::/8,::1");
    CU_ASSERT_EQUAL(l.n, 4);
    CU_ASSERT(in(&l, "10.255.0.1"));
    CU_ASSERT(!in(&l, "11.0.0.1"));
    CU_ASSERT(in(&l, "192.168.1.7"));
    CU_ASSERT(!in(&l, "192.168.1.8"));
    CU_ASSERT(in(&l, "fdab::9"));
    CU_ASSERT(!in(&l, "fe00::9"));
    CU_ASSERT(in(&l, "::1"));
    CU_ASSERT(!in(&l, "::2"));
    CU_ASSERT(in(&l, "[::ffff:10.1.2.3]:9")); /* v4 CIDRs match v4-mapped peers */
    pl_cidr_list_free(&l);

    l = L("0.0.0.0/0");
    CU_ASSERT(in(&l, "1.2.3.4"));
    CU_ASSERT(!in(&l, "2001:db8::1")); /* all of IPv4, not all addresses */
    pl_cidr_list_free(&l);
    l = L("::/0");
    CU_ASSERT(in(&l, "1.2.3.4") && in(&l, "2001:db8::1"));
    pl_cidr_list_free(&l);
    l = L("127.0.0.0/31");
    CU_ASSERT(in(&l, "127.0.0.1") && in(&l, "127.0.0.0") && !in(&l, "127.0.0.2"));
    pl_cidr_list_free(&l);
    l = L("2001:db8:0:2::/63");
    CU_ASSERT(in(&l, "2001:db8:0:2::5") && in(&l, "2001:db8:0:3::5"));
    CU_ASSERT(!in(&l, "2001:db8:0:4::5") && !in(&l, "2001:db8:0:1::5"));
    pl_cidr_list_free(&l);

    l = L("");
    CU_ASSERT_EQUAL(l.n, 0);
    CU_ASSERT(!in(&l, "127.0.0.1"));
    pl_cidr_list_free(&l);
    l = L(" ,, ");
    CU_ASSERT_EQUAL(l.n, 0);
    pl_cidr_list_free(&l);
}

static void test_cidr_rejects(void)
{
    const char *bad[] = {"10.0.0.0/33", "10.0.0.1/8",   "::1/129",   "10.0.0.0/",
                         "10.0.0.0/x",  "/8",           "[::1]",     "1.2.3.4:80",
                         "example.com", "10.0.0.0/8 x", "fd00::1/8", "10.0.0.0/-1"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        pl_cidr_list_t l;
        char err[128] = "";
        int r = pl_cidr_list_parse(bad[i], &l, err, sizeof(err));
        if (r == 0)
            fprintf(stderr, "\n  accepted: '%s'\n", bad[i]);
        CU_ASSERT_EQUAL(r, -1);
        CU_ASSERT(err[0] != '\0');
        CU_ASSERT(l.n == 0 && l.v == NULL);
    }
}

/* The client pl_addr_forwarded picks, formatted, or "-" for none. */
static const char *fwd(const char *trusted, const char *xff, const char *xri)
{
    static char out[PL_ADDR_STRLEN];
    pl_cidr_list_t l = L(trusted);
    pl_addr_t a;
    int r = pl_addr_forwarded(&l, xff, xff ? strlen(xff) : 0, xri, xri ? strlen(xri) : 0, &a);
    pl_cidr_list_free(&l);
    if (r < 0)
        return "-";
    pl_addr_format(&a, out);
    return out;
}

static void test_forwarded_rightmost_untrusted(void)
{
    const char *t = "10.0.0.0/8";
    CU_ASSERT_STRING_EQUAL(fwd(t, "203.0.113.9", NULL), "203.0.113.9");
    /* a client-written entry on the left is ignored */
    CU_ASSERT_STRING_EQUAL(fwd(t, "6.6.6.6, 203.0.113.9", NULL), "203.0.113.9");
    /* trusted hops on the right are skipped */
    CU_ASSERT_STRING_EQUAL(fwd(t, "6.6.6.6, 203.0.113.9, 10.0.0.5,10.1.1.1", NULL), "203.0.113.9");
    /* all trusted: the leftmost */
    CU_ASSERT_STRING_EQUAL(fwd(t, "10.0.0.7, 10.0.0.5", NULL), "10.0.0.7");
    /* garbage the client wrote, behind the real hop: never reached */
    CU_ASSERT_STRING_EQUAL(fwd(t, "<script>, 203.0.113.9", NULL), "203.0.113.9");
    /* garbage right of the client: the trusted hop right of it */
    CU_ASSERT_STRING_EQUAL(fwd(t, "203.0.113.9, unknown, 10.0.0.5", NULL), "10.0.0.5");
    /* garbage rightmost, then X-Real-IP */
    CU_ASSERT_STRING_EQUAL(fwd(t, "203.0.113.9, unknown", NULL), "-");
    CU_ASSERT_STRING_EQUAL(fwd(t, "unknown", "198.51.100.2"), "198.51.100.2");
    /* ports and brackets, empty items, IPv6 */
    CU_ASSERT_STRING_EQUAL(fwd(t, " , 203.0.113.9:5000 ,, ", NULL), "203.0.113.9");
    CU_ASSERT_STRING_EQUAL(fwd("fd00::/8", "2001:db8::7, [fd00::1]:443", NULL), "[2001:db8::7]");
    /* X-Real-IP only without a usable X-Forwarded-For */
    CU_ASSERT_STRING_EQUAL(fwd(t, "203.0.113.9", "198.51.100.2"), "203.0.113.9");
    CU_ASSERT_STRING_EQUAL(fwd(t, NULL, "198.51.100.2"), "198.51.100.2");
    CU_ASSERT_STRING_EQUAL(fwd(t, NULL, "[2001:db8::2]:1"), "[2001:db8::2]");
    CU_ASSERT_STRING_EQUAL(fwd(t, NULL, "nonsense"), "-");
    CU_ASSERT_STRING_EQUAL(fwd(t, NULL, NULL), "-");
    CU_ASSERT_STRING_EQUAL(fwd(t, "", NULL), "-");
    /* nothing trusted: the rightmost entry, whatever is left of it */
    CU_ASSERT_STRING_EQUAL(fwd("", "10.0.0.7, 10.0.0.5", NULL), "10.0.0.5");
}

PL_UNIT_SUITE(addr, PL_TEST(test_parse_forms), PL_TEST(test_parse_rejects),
              PL_TEST(test_from_sockaddr), PL_TEST(test_cidr_lists), PL_TEST(test_cidr_rejects),
              PL_TEST(test_forwarded_rightmost_untrusted))
