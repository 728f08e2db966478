/*
 * store/hquery.c: the filter applied to recent (Redis) events, which must
 * agree with the SQL side (sender equality, inclusive time bounds) for a
 * filtered page to be exact across the seam.
 */
#include "hquery.h"
#include "unit.h"

#include <string.h>

static const char ev[] =
    "{\"ev\":\"msg\",\"room\":\"r\",\"seq\":7,\"msg_id\":\"ab\",\"from\":\"bob\","
    "\"text\":\",\\\"from\\\":\\\"eve\\\",\\\"ts\\\":1,\",\"ts\":1000}";

static int m(const char *sender, int64_t from, int64_t until)
{
    pl_hq_t q;
    memset(&q, 0, sizeof(q));
    strcpy(q.room, "r");
    strcpy(q.sender, sender);
    q.from_ts = from;
    q.until_ts = until;
    return pl_hq_match(&q, ev, strlen(ev));
}

static void test_match(void)
{
    CU_ASSERT_EQUAL(m("", -1, -1), 1);
    CU_ASSERT_EQUAL(m("bob", -1, -1), 1);
    CU_ASSERT_EQUAL(m("bo", -1, -1), 0); /* a prefix is not the sender */
    CU_ASSERT_EQUAL(m("bobb", -1, -1), 0);
    CU_ASSERT_EQUAL(m("eve", -1, -1), 0);  /* ,"from":"eve" inside the text is escaped */
    CU_ASSERT_EQUAL(m("", 1000, 1000), 1); /* both bounds inclusive */
    CU_ASSERT_EQUAL(m("", 1001, -1), 0);
    CU_ASSERT_EQUAL(m("", -1, 999), 0);
    CU_ASSERT_EQUAL(m("", 0, 2), 0); /* "ts":1 inside the text is not the field */
    CU_ASSERT_EQUAL(m("bob", 0, 5000), 1);
    /* an event without the fields never matches a filter */
    pl_hq_t q;
    memset(&q, 0, sizeof(q));
    q.from_ts = 0;
    q.until_ts = -1;
    CU_ASSERT_EQUAL(pl_hq_match(&q, "{\"ev\":\"msg\"}", 12), 0);
}

PL_UNIT_SUITE(hquery, PL_TEST(test_match))
