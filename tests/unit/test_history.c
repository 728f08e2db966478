/*
 * store/history.c: the pure parts of the history reads: when a page needs
 * its older part from MySQL, the no-hole check at the seam, events rebuilt
 * like the send script's, members' origin, the JSON string encoder (byte
 * for byte jansson's) and pages kept past their reply.
 */
#include "history.h"
#include "unit.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void test_history_seam(void)
{
    pl_hmsg_t v[3] = {{.seq = 5}, {.seq = 6}, {.seq = 7}};
    pl_history_page_t full = {v, 3, 1, NULL}, part = {v, 3, 0, NULL}, none = {NULL, 0, 0, NULL};
    int64_t ob;
    int ol;
    CU_ASSERT_EQUAL(pl_history_older_needed(&full, 0, 3, &ob, &ol), 0);
    CU_ASSERT_EQUAL(pl_history_older_needed(&part, 0, 3, &ob, &ol), 0); /* exactly a page */
    CU_ASSERT_EQUAL(pl_history_older_needed(&part, 0, 10, &ob, &ol), 1);
    CU_ASSERT_EQUAL(ob, 5);
    CU_ASSERT_EQUAL(ol, 7);
    CU_ASSERT_EQUAL(pl_history_older_needed(&none, 100, 10, &ob, &ol), 1);
    CU_ASSERT_EQUAL(ob, 100);
    CU_ASSERT_EQUAL(ol, 10);
    CU_ASSERT_EQUAL(pl_history_older_needed(&none, 1, 10, &ob, &ol), 0);
    pl_hmsg_t first[1] = {{.seq = 1}};
    pl_history_page_t from1 = {first, 1, 0, NULL};
    CU_ASSERT_EQUAL(pl_history_older_needed(&from1, 0, 10, &ob, &ol), 0);
}

/* The MySQL part of a page: events rebuilt exactly like the send script's,
 * and the no-hole check between the MySQL and the Redis part. */
static void test_history_mysql_part(void)
{
    size_t n = 0;
    char *j = pl_history_event_json("lobby", 5, 42, "0123", 4, "alice", 5, "q\"\\\n\0e", 6,
                                    1764100000123, &n);
    const char *want = "{\"ev\":\"msg\",\"room\":\"lobby\",\"seq\":42,\"msg_id\":\"0123\","
                       "\"from\":\"alice\",\"text\":\"q\\\"\\\\\\n\\u0000e\",\"ts\":1764100000123}";
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(j, want);
    CU_ASSERT_EQUAL(n, strlen(want));
    free(j);
    CU_ASSERT_PTR_NULL(pl_history_event_json("r", 1, 1, "m", 1, "a", 1, "\xff", 1, 1, &n));

    pl_hmsg_t a[2] = {{.seq = 3}, {.seq = 4}}, b[2] = {{.seq = 5}, {.seq = 6}};
    pl_hmsg_t c[1] = {{.seq = 6}};
    pl_history_page_t older = {a, 2, 0, NULL}, recent = {b, 2, 0, NULL}, gap = {c, 1, 0, NULL},
                      none = {NULL, 0, 0, NULL};
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &recent), 1);
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &gap), 0);
    CU_ASSERT_EQUAL(pl_history_contiguous(&none, &recent), 1);
    CU_ASSERT_EQUAL(pl_history_contiguous(&older, &none), 1);
}

/* Recent-zset members carry their origin as a prefix; old ones do not. */
static void test_member_origin(void)
{
    const char *json, *node;
    size_t jl, nl;
    int w;
    uint64_t c;
    const char m1[] = "o1:17:1:8:node-a.9{\"ev\":\"msg\"}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m1, strlen(m1), &json, &jl, &node, &nl, &w, &c), 1);
    CU_ASSERT(c == 17 && w == 1 && nl == 8 && memcmp(node, "node-a.9", 8) == 0);
    CU_ASSERT(jl == 12 && memcmp(json, "{\"ev\":\"msg\"}", 12) == 0);
    const char m2[] = "{\"ev\":\"msg\"}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m2, strlen(m2), &json, &jl, &node, &nl, &w, &c), 0);
    CU_ASSERT(json == m2 && jl == strlen(m2));
    const char m3[] = "o1:17:1:99:short{}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m3, strlen(m3), &json, &jl, &node, &nl, &w, &c), 0);
    CU_ASSERT(json == m3 && jl == strlen(m3));
    const char m4[] = "o1:x:1:1:n{}";
    CU_ASSERT_EQUAL(pl_history_member_parse(m4, strlen(m4), &json, &jl, &node, &nl, &w, &c), 0);
}

/* jansson's literal for s, as the send script's room_json/text_json. */
static char *jansson_literal(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j == NULL)
        return NULL;
    char *out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    return out;
}

/* The history escaper writes exactly the bytes jansson writes for the
 * script, on hostile inputs, and refuses what jansson refuses. */
static void test_json_string_matches_jansson(void)
{
    static const struct {
        const char *s;
        size_t n;
    } in[] = {
#define S(x) {x, sizeof(x) - 1}
        S(""),
        S("lobby"),
        S("\"quoted\" and \\backslash\\ and /slash/"),
        S("\b\f\n\r\t"),
        S("\x01\x02\x03\x04\x05\x06\x07\x0b\x0e\x0f\x10\x11\x1a\x1b\x1e\x1f"),
        S("nul\0in\0middle\0"),
        S("\0"),
        S("del\x7f"),
        S("</script><script>alert(1)</script>"),
        S("2-byte \xc3\xa9\xc3\xbc \xd7\xa9"),
        S("3-byte \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac"),
        S("4-byte \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"),
        S("line sep \xe2\x80\xa8 para sep \xe2\x80\xa9"),
        S("\xef\xbb\xbf BOM, \xef\xbf\xbf noncharacter"),
        S("\"\\\"\\\\\x1f\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"),
        /* invalid: lone continuation, overlong, surrogate, > U+10FFFF,
         * truncated, 0xff */
        S("\x80"),
        S("\xc0\xaf"),
        S("\xe0\x80\xaf"),
        S("\xed\xa0\x80"),
        S("\xf4\x90\x80\x80"),
        S("\xf5\x80\x80\x80"),
        S("ok then \xe2\x82"),
        S("\xff"),
#undef S
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char *want = jansson_literal(in[i].s, in[i].n);
        pl_buf_t b = {0};
        pl_buf_add(&b, "x", 1); /* appends after what is there */
        int rc = pl_history_json_string(&b, in[i].s, in[i].n);
        if (want == NULL) {
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_EQUAL(b.n, 1);
        } else {
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            CU_ASSERT_EQUAL(b.n - 1, strlen(want));
            CU_ASSERT(b.n - 1 == strlen(want) && memcmp(b.p + 1, want, b.n - 1) == 0);
        }
        free(want);
        free(b.p);
    }
    /* every single byte and every byte after a valid lead */
    for (int c = 0; c < 256; c++) {
        char s[3] = {(char)c, 'a', (char)0xc3};
        for (size_t n = 1; n <= 3; n++) {
            char *want = jansson_literal(s, n);
            pl_buf_t b = {0};
            int rc = pl_history_json_string(&b, s, n);
            CU_ASSERT_EQUAL(rc, want ? 0 : -1);
            if (want && rc == 0)
                CU_ASSERT(b.n == strlen(want) && memcmp(b.p, want, b.n) == 0);
            free(want);
            free(b.p);
        }
    }
}

/* A page built into one buffer: events appended with a pre-escaped room
 * match pl_history_event_json, and a kept page owns its bytes. */
static void test_event_append_and_keep(void)
{
    pl_buf_t rj = {0}, b = {0};
    const char *room = "r\"\xe2\x80\xa8</script>";
    CU_ASSERT_EQUAL(pl_history_json_string(&rj, room, strlen(room)), 0);
    CU_ASSERT_EQUAL(
        pl_history_event_append(&b, rj.p, rj.n, 7, "m1", 2, "bob", 3, "t\0\x7f", 3, 1764100000000),
        0);
    size_t n;
    char *one = pl_history_event_json(room, strlen(room), 7, "m1", 2, "bob", 3, "t\0\x7f", 3,
                                      1764100000000, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    CU_ASSERT(n == b.n && memcmp(one, b.p, n) == 0);
    size_t before = b.n;
    CU_ASSERT_EQUAL(pl_history_event_append(&b, rj.p, rj.n, 8, "m2", 2, "bob", 3, "\xc0", 1, 1),
                    -1);
    CU_ASSERT_EQUAL(b.n, before); /* a refused event leaves nothing behind */
    free(one);
    free(rj.p);

    pl_hmsg_t v[2] = {{.seq = 7, .json = b.p, .len = before},
                      {.seq = 8, .json = "{}", .len = 2, .node = "n1.2", .worker = 1, .conn = 9}};
    pl_history_page_t lent = {v, 2, 1, NULL}, kept = {0};
    pl_history_page_keep(&kept, &lent);
    free(b.p);
    CU_ASSERT_EQUAL(kept.n, 2);
    CU_ASSERT_EQUAL(kept.more, 1);
    CU_ASSERT_EQUAL(kept.v[0].seq, 7);
    CU_ASSERT_EQUAL(kept.v[0].len, before);
    CU_ASSERT_EQUAL(kept.v[0].json[kept.v[0].len], '\0');
    CU_ASSERT_PTR_NULL(kept.v[0].node);
    CU_ASSERT_STRING_EQUAL(kept.v[1].json, "{}");
    CU_ASSERT_STRING_EQUAL(kept.v[1].node, "n1.2");
    CU_ASSERT_EQUAL(kept.v[1].conn, 9);
    pl_history_page_free(&kept);
    CU_ASSERT_PTR_NULL(kept.v);
    CU_ASSERT_EQUAL(kept.n, 0);
}

PL_UNIT_SUITE(history, PL_TEST(test_history_seam), PL_TEST(test_history_mysql_part),
              PL_TEST(test_member_origin), PL_TEST(test_json_string_matches_jansson),
              PL_TEST(test_event_append_and_keep))
