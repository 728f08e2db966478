/*
 * A growable byte buffer, the one both programs build text in: SQL
 * statements (archiver), /metrics pages (both), history replies and
 * stored events (gateway). Plain memory, no libevent: code that ends in
 * an evbuffer builds here and adds the bytes once.
 *
 * Zero-initialise (pl_buf_t b = {0}); p is NULL until the first byte.
 * The bytes are p[0..n); writing straight into p + n after
 * pl_buf_reserve() and then raising n is allowed (and is how the JSON
 * encoders fill it). The buffer owns p: pl_buf_free() releases it, or the
 * caller takes it (and frees it) by keeping p and never touching b again.
 */
#ifndef PL_BUF_H
#define PL_BUF_H

#include <stddef.h>

typedef struct pl_buf {
    char *p;    /* heap; NULL while nothing was ever reserved */
    size_t n;   /* bytes in use */
    size_t cap; /* bytes allocated */
} pl_buf_t;

/* Makes room for `more` bytes past b->n (aborts on out of memory). */
void pl_buf_reserve(pl_buf_t *b, size_t more);
/* Appends n bytes (may hold NUL). */
void pl_buf_add(pl_buf_t *b, const void *s, size_t n);
/* Appends a C string without its NUL. */
void pl_buf_add_str(pl_buf_t *b, const char *s);
/* Appends printf output (without the NUL). */
void pl_buf_printf(pl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Puts a NUL after the n bytes, not counted in n, and returns p: for
 * callers that need a C string (never NULL; "" for an empty buffer). */
char *pl_buf_cstr(pl_buf_t *b);
/* Empties the buffer, keeping its memory for the next use. */
void pl_buf_reset(pl_buf_t *b);
/* Releases the memory; b is empty (and reusable) afterwards. */
void pl_buf_free(pl_buf_t *b);

#endif
