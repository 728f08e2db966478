/*
 * Redis stream entry IDs ("ms-seq"): parsing, ordering and formatting, for
 * trimming the archive stream up to what every consumer group still needs.
 * Pure.
 */
#ifndef PL_ARCH_STREAMID_H
#define PL_ARCH_STREAMID_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_arch_stream_id {
    uint64_t ms, seq;
} pl_arch_stream_id_t;

/* Parses "ms-seq" or "ms" (seq 0) from s[0..n); returns 0 or -1. */
int pl_arch_stream_id_parse(const char *s, size_t n, pl_arch_stream_id_t *id);
/* <0, 0, >0 as a is before, equal to or after b. */
int pl_arch_stream_id_cmp(pl_arch_stream_id_t a, pl_arch_stream_id_t b);
/* The smallest ID greater than id. */
pl_arch_stream_id_t pl_arch_stream_id_next(pl_arch_stream_id_t id);
/* Formats as "ms-seq" into out (at least 42 bytes for any ID). */
void pl_arch_stream_id_format(pl_arch_stream_id_t id, char *out, size_t len);

#endif
