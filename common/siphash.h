/*
 * SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012), written from the paper: a keyed hash for hash tables whose keys
 * come from clients (room names, user ids). With a secret random key an
 * attacker cannot compute colliding names offline, so a table's chains
 * stay short whatever names are sent (map.c).
 *
 * SipHash-2-4 is the paper's recommended variant (its test vectors check
 * this code); SipHash-1-3 is the faster variant hash tables use (as in
 * Python and Rust), the same function with fewer rounds.
 */
#ifndef PL_SIPHASH_H
#define PL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define PL_SIPHASH_KEY_LEN 16

/* SipHash-c-d of the len bytes at data under the 16-byte key (k0 and k1
 * read little-endian, as in the paper). Pure; data may be NULL when len
 * is 0. */
uint64_t pl_siphash(const uint8_t key[PL_SIPHASH_KEY_LEN], const void *data, size_t len,
                    int crounds, int drounds);

static inline uint64_t pl_siphash24(const uint8_t key[PL_SIPHASH_KEY_LEN], const void *data,
                                    size_t len)
{
    return pl_siphash(key, data, len, 2, 4);
}

static inline uint64_t pl_siphash13(const uint8_t key[PL_SIPHASH_KEY_LEN], const void *data,
                                    size_t len)
{
    return pl_siphash(key, data, len, 1, 3);
}

#endif
