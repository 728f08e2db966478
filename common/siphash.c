/*
 * SipHash-c-d (see siphash.h), from the specification in the paper:
 * four 64-bit lanes initialised from the key and four constants, c
 * SipRounds per 8-byte little-endian message word, a last word holding
 * the remaining bytes and the length mod 256 in its top byte, then d
 * rounds after v2 ^= 0xff.
 */
#include "siphash.h"

#include <string.h>

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

uint64_t pl_siphash(const uint8_t key[PL_SIPHASH_KEY_LEN], const void *data, size_t len,
                    int crounds, int drounds)
{
    const uint8_t *in = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(in + i);
        v3 ^= m;
        for (int r = 0; r < crounds; r++)
            SIPROUND;
        v0 ^= m;
    }
    uint8_t last[8] = {0};
    if (len > full)
        memcpy(last, in + full, len - full);
    uint64_t b = (uint64_t)(len & 0xff) << 56 | load_le64(last);
    v3 ^= b;
    for (int r = 0; r < crounds; r++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int r = 0; r < drounds; r++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
