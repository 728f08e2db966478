/*
 * archiver/streamid.c: parsing, ordering, successor and formatting of
 * stream entry IDs.
 */
#include "../../archiver/streamid.h"
#include "unit.h"

static void test_stream_ids(void)
{
    pl_arch_stream_id_t a, b;
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("1700000000000-5", 15, &a), 0);
    CU_ASSERT_EQUAL(a.ms, 1700000000000ULL);
    CU_ASSERT_EQUAL(a.seq, 5);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("42", 2, &b), 0);
    CU_ASSERT_EQUAL(b.seq, 0);
    CU_ASSERT(pl_arch_stream_id_cmp(b, a) < 0);
    CU_ASSERT(pl_arch_stream_id_cmp(a, a) == 0);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("1-x", 3, &b), -1);
    CU_ASSERT_EQUAL(pl_arch_stream_id_parse("-1", 2, &b), -1);
    pl_arch_stream_id_t n = pl_arch_stream_id_next(a);
    CU_ASSERT_EQUAL(n.seq, 6);
    pl_arch_stream_id_t max = {7, UINT64_MAX};
    n = pl_arch_stream_id_next(max);
    CU_ASSERT_EQUAL(n.ms, 8);
    CU_ASSERT_EQUAL(n.seq, 0);
    char buf[48];
    pl_arch_stream_id_format(a, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "1700000000000-5");
}

PL_UNIT_SUITE(archiver_streamid, PL_TEST(test_stream_ids))
