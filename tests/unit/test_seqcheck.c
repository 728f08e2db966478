/*
 * gateway/chat/seqcheck.c: parsing msg_id and ts out of a msg event (and
 * out of a frame around it), and the duplicate / regression verdict for a
 * seq at or below the last delivered one.
 */
#include "seqcheck.h"
#include "unit.h"

#include <string.h>

static const char ev1[] = "{\"ev\":\"msg\",\"room\":\"r\",\"seq\":3,\"msg_id\":"
                          "\"00000000000000aa0123456789abcdef\",\"from\":\"a\",\"text\":\"hi\","
                          "\"ts\":1700000000123}";

static void test_parse(void)
{
    uint64_t id;
    int64_t ts;
    CU_ASSERT_EQUAL(pl_seqcheck_parse(ev1, strlen(ev1), &id, &ts), 0);
    CU_ASSERT_EQUAL(id, 0xaa);
    CU_ASSERT_EQUAL(ts, 1700000000123LL);
    /* inside a frame: binary header bytes in front */
    char fr[512] = {(char)0x81, 126, 0, 0};
    memcpy(fr + 4, ev1, strlen(ev1));
    CU_ASSERT_EQUAL(pl_seqcheck_parse(fr, 4 + strlen(ev1), &id, &ts), 0);
    CU_ASSERT_EQUAL(id, 0xaa);
    /* a text that looks like the fields is escaped and not taken */
    static const char ev2[] = "{\"ev\":\"msg\",\"room\":\"r\",\"seq\":3,\"msg_id\":"
                              "\"ffffffffffffffff0123456789abcdef\",\"from\":\"a\",\"text\":"
                              "\"x\\\",\\\"ts\\\":5\",\"ts\":42}";
    CU_ASSERT_EQUAL(pl_seqcheck_parse(ev2, strlen(ev2), &id, &ts), 0);
    CU_ASSERT_EQUAL(id, 0xffffffffffffffffULL);
    CU_ASSERT_EQUAL(ts, 42);
    /* missing pieces */
    static const char nots[] = "{\"ev\":\"msg\",\"seq\":3,\"msg_id\":\"ab\"}";
    CU_ASSERT_EQUAL(pl_seqcheck_parse(nots, strlen(nots), &id, &ts), -1);
    CU_ASSERT_EQUAL(id, 0);
    static const char noid[] = "{\"ev\":\"msg\",\"seq\":3,\"ts\":5}";
    CU_ASSERT_EQUAL(pl_seqcheck_parse(noid, strlen(noid), &id, &ts), -1);
    CU_ASSERT_EQUAL(pl_seqcheck_parse(ev1, 20, &id, &ts), -1); /* cut short */
}

static void test_verdicts(void)
{
    pl_seqcheck_t c;
    memset(&c, 0, sizeof(c));
    /* nothing delivered yet (a join's base): an old seq is before it */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 3, 7, 100), PL_SEQ_DUP);
    for (int64_t s = 1; s <= 5; s++)
        pl_seqcheck_note(&c, s, (uint64_t)(100 + s), 1000 + s);
    /* the same message again: duplicate */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 4, 104, 1004), PL_SEQ_DUP);
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 5, 105, 1005), PL_SEQ_DUP);
    /* a used seq under another msg_id: regression, whatever its ts */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 1, 999, 1001), PL_SEQ_REGRESSION);
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 5, 999, 900), PL_SEQ_REGRESSION);
    /* unparsed: never called a regression */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 5, 0, 2000), PL_SEQ_DUP);
    /* past the ring: decided by the timestamp */
    for (int64_t s = 6; s <= 30; s++)
        pl_seqcheck_note(&c, s, (uint64_t)(100 + s), 1000 + s);
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 2, 102, 1002), PL_SEQ_DUP);        /* old copy */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 2, 555, 1030), PL_SEQ_DUP);        /* same ms: can't tell */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 2, 555, 1031), PL_SEQ_REGRESSION); /* newer */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 30, 130, 1030), PL_SEQ_DUP);       /* still remembered */
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 23, 123, 1023), PL_SEQ_DUP);
    CU_ASSERT_EQUAL(pl_seqcheck_old(&c, 23, 124, 1023), PL_SEQ_REGRESSION);
}

PL_UNIT_SUITE(seqcheck, PL_TEST(test_parse), PL_TEST(test_verdicts))
