/*
 * common/utf8.c: the validator both programs use. Every input is fed
 * whole and at every split into three feeds (a WebSocket message arrives
 * in fragments); the counting variant is checked against the archiver's
 * character limits.
 */
#include "unit.h"
#include "utf8.h"

#include <string.h>

/* Feeds s split at every pair of points (three feeds); all must agree with
 * want (0 valid, -1 not). */
static void check_utf8_splits(const uint8_t *s, size_t n, int want)
{
    CU_ASSERT_EQUAL(pl_utf8_validate(s, n), want);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            pl_utf8_t u = {0};
            int ok = pl_utf8_feed(&u, s, a) == 0 && pl_utf8_feed(&u, s + a, b - a) == 0 &&
                     pl_utf8_feed(&u, s + b, n - b) == 0 && pl_utf8_complete(&u);
            CU_ASSERT_EQUAL(ok ? 0 : -1, want);
        }
    }
}

#define UTF8(lit, want) check_utf8_splits((const uint8_t *)(lit), sizeof(lit) - 1, (want))

static void test_utf8_valid(void)
{
    UTF8("", 0);
    UTF8("plain ascii, longer than eight bytes", 0);
    UTF8("\x7f", 0);
    UTF8("\xc2\x80", 0);                                     /* U+0080 */
    UTF8("\xdf\xbf", 0);                                     /* U+07FF */
    UTF8("\xe0\xa0\x80", 0);                                 /* U+0800 */
    UTF8("\xed\x9f\xbf", 0);                                 /* U+D7FF, just below the surrogates */
    UTF8("\xee\x80\x80", 0);                                 /* U+E000, just above */
    UTF8("\xef\xbf\xbf", 0);                                 /* U+FFFF */
    UTF8("\xf0\x90\x80\x80", 0);                             /* U+10000 */
    UTF8("\xf4\x8f\xbf\xbf", 0);                             /* U+10FFFF */
    UTF8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0); /* "kosme" in Greek */
    UTF8("caf\xc3\xa9 \xf0\x9f\x98\x80 ok", 0);
}

static void test_utf8_invalid(void)
{
    UTF8("\xc0\x80", -1);         /* overlong NUL */
    UTF8("\xc1\xbf", -1);         /* overlong */
    UTF8("\xe0\x80\x80", -1);     /* overlong 3-byte */
    UTF8("\xe0\x9f\xbf", -1);     /* overlong U+07FF */
    UTF8("\xf0\x80\x80\x80", -1); /* overlong 4-byte */
    UTF8("\xf0\x8f\xbf\xbf", -1); /* overlong U+FFFF */
    UTF8("\xed\xa0\x80", -1);     /* U+D800 */
    UTF8("\xed\xbf\xbf", -1);     /* U+DFFF */
    UTF8("\xf4\x90\x80\x80", -1); /* U+110000 */
    UTF8("\xf5\x80\x80\x80", -1);
    UTF8("\xf8\x88\x80\x80\x80", -1);
    UTF8("\xfe", -1);
    UTF8("\xff", -1);
    UTF8("\x80", -1); /* lone continuation */
    UTF8("a\xbf"
         "b",
         -1);
    UTF8("\xc2\x41", -1); /* continuation missing */
    UTF8("\xe2\x82\x41", -1);
    UTF8("\xc2", -1); /* truncated at the end */
    UTF8("\xe0\xa0", -1);
    UTF8("\xf0\x90\x80", -1);
    UTF8("ok \xf0\x9f\x98", -1);
    UTF8("\xc2\x80\x80", -1); /* one continuation too many */
}

static void test_utf8_ascii_fast_path(void)
{
    /* A multi-byte or bad byte at every offset around the 8-byte steps. */
    uint8_t s[40];
    for (size_t i = 0; i + 2 <= sizeof(s); i++) {
        memset(s, 'x', sizeof(s));
        s[i] = 0xc3;
        s[i + 1] = 0xa9;
        CU_ASSERT_EQUAL(pl_utf8_validate(s, sizeof(s)), 0);
        s[i + 1] = 'y';
        CU_ASSERT_EQUAL(pl_utf8_validate(s, sizeof(s)), -1);
        s[i] = 0x80;
        CU_ASSERT_EQUAL(pl_utf8_validate(s, sizeof(s)), -1);
    }
    memset(s, 'x', sizeof(s));
    s[sizeof(s) - 1] = 0xc3;
    CU_ASSERT_EQUAL(pl_utf8_validate(s, sizeof(s)), -1);
}

static void test_utf8_exhaustive_two_and_three_bytes(void)
{
    /* Compare with a plain decode-then-check for every 2- and 3-byte input
     * starting with a lead byte. */
    for (uint32_t a = 0xc0; a <= 0xff; a++) {
        for (uint32_t b = 0; b <= 0xff; b++) {
            uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            int want = -1;
            if (a >= 0xc0 && a < 0xe0 && (b & 0xc0) == 0x80) {
                uint32_t cp = (a & 0x1f) << 6 | (b & 0x3f);
                want = cp >= 0x80 ? 0 : -1;
            }
            CU_ASSERT_EQUAL(pl_utf8_validate(s, 2), want);
            if (a < 0xe0 || a >= 0xf0)
                continue;
            for (uint32_t c = 0x70; c <= 0xcf; c++) {
                uint8_t t[3] = {(uint8_t)a, (uint8_t)b, (uint8_t)c};
                want = -1;
                if ((b & 0xc0) == 0x80 && (c & 0xc0) == 0x80) {
                    uint32_t cp = (a & 0x0f) << 12 | (b & 0x3f) << 6 | (c & 0x3f);
                    want = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 0 : -1;
                }
                CU_ASSERT_EQUAL(pl_utf8_validate(t, 3), want);
            }
        }
    }
}

static void test_utf8_chars_counts_code_points(void)
{
    size_t chars = 99;
    CU_ASSERT_EQUAL(pl_utf8_chars("", 0, &chars), 0);
    CU_ASSERT_EQUAL(chars, 0);
    CU_ASSERT_EQUAL(pl_utf8_chars("a\0b", 3, &chars), 0); /* NUL is a character */
    CU_ASSERT_EQUAL(chars, 3);
    CU_ASSERT_EQUAL(pl_utf8_chars("\xf0\x9f\x98\x80\xc3\xa9", 6, &chars), 0);
    CU_ASSERT_EQUAL(chars, 2);
    CU_ASSERT_EQUAL(pl_utf8_chars("\xe2\x82\xac"
                                  "12",
                                  5, &chars),
                    0);
    CU_ASSERT_EQUAL(chars, 3);
    chars = 7;
    CU_ASSERT_EQUAL(pl_utf8_chars("\xc0\x80", 2, &chars), -1);         /* overlong NUL */
    CU_ASSERT_EQUAL(pl_utf8_chars("\xe0\x80\x80", 3, &chars), -1);     /* overlong */
    CU_ASSERT_EQUAL(pl_utf8_chars("\xf4\x90\x80\x80", 4, &chars), -1); /* > U+10FFFF */
    CU_ASSERT_EQUAL(pl_utf8_chars("\xf0\x9f\x98", 3, &chars), -1);     /* truncated */
    CU_ASSERT_EQUAL(pl_utf8_chars("\xff", 1, &chars), -1);
    CU_ASSERT_EQUAL(chars, 7); /* untouched on failure */
}

PL_UNIT_SUITE(utf8, PL_TEST(test_utf8_valid), PL_TEST(test_utf8_invalid),
              PL_TEST(test_utf8_ascii_fast_path), PL_TEST(test_utf8_exhaustive_two_and_three_bytes),
              PL_TEST(test_utf8_chars_counts_code_points))
