/*
 * UTF-8 validation (see utf8.h): a lead byte narrows the range of the
 * first continuation byte, which is what rejects overlongs, surrogates and
 * code points above U+10FFFF without decoding them; runs of ASCII are
 * skipped a word at a time. No allocation, no I/O.
 */
#include "utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ULL

/* Classifies a lead byte: how many continuation bytes follow and the range
 * the first of them must fall in. Narrowing that first range is what
 * rejects overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
static int lead(uint8_t b, uint32_t *need, uint32_t *lo, uint32_t *hi)
{
    if (b < 0xC2) /* 80-BF stray continuation, C0-C1 always overlong */
        return -1;
    if (b < 0xE0) {
        *need = 1;
        *lo = 0x80;
        *hi = 0xBF;
    } else if (b < 0xF0) {
        *need = 2;
        *lo = b == 0xE0 ? 0xA0 : 0x80;
        *hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b < 0xF5) {
        *need = 3;
        *lo = b == 0xF0 ? 0x90 : 0x80;
        *hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
        return -1;
    }
    return 0;
}

int pl_utf8_feed(pl_utf8_t *u, const void *bytes, size_t n)
{
    const uint8_t *p = bytes;
    size_t i = 0;

    /* Finish the code point the previous feed left open. */
    while (u->need > 0 && i < n) {
        if (p[i] < u->lower || p[i] > u->upper)
            return -1;
        u->need--;
        u->lower = 0x80;
        u->upper = 0xBF;
        i++;
    }
    while (i < n) {
        /* Chat text is mostly ASCII: skip it a word at a time. */
        uint64_t w;
        while (i + 8 <= n && (memcpy(&w, p + i, 8), (w & HIGH_BITS) == 0))
            i += 8;
        if (i == n)
            break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t need, lo, hi;
        if (lead(p[i], &need, &lo, &hi) < 0)
            return -1;
        i++;
        while (need > 0) {
            if (i == n) { /* split code point: resume on the next feed */
                u->need = need;
                u->lower = lo;
                u->upper = hi;
                return 0;
            }
            if (p[i] < lo || p[i] > hi)
                return -1;
            need--;
            lo = 0x80;
            hi = 0xBF;
            i++;
        }
    }
    return 0;
}

int pl_utf8_complete(const pl_utf8_t *u)
{
    return u->need == 0;
}

int pl_utf8_validate(const void *p, size_t n)
{
    pl_utf8_t u = {0};
    return pl_utf8_feed(&u, p, n) == 0 && pl_utf8_complete(&u) ? 0 : -1;
}

int pl_utf8_chars(const void *bytes, size_t n, size_t *chars)
{
    if (pl_utf8_validate(bytes, n) < 0)
        return -1;
    /* Valid: every byte that is not a continuation byte starts one. */
    const uint8_t *p = bytes;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (p[i] & 0xC0) != 0x80;
    *chars = count;
    return 0;
}
