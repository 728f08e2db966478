/*
 * The growable byte buffer (see buf.h): doubling growth from 256 bytes,
 * allocation through pl_xrealloc so callers never see NULL.
 */
#include "buf.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pl_buf_reserve(pl_buf_t *b, size_t more)
{
    if (b->cap - b->n >= more)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < more)
        cap *= 2;
    b->p = pl_xrealloc(b->p, cap);
    b->cap = cap;
}

void pl_buf_add(pl_buf_t *b, const void *s, size_t n)
{
    if (n == 0)
        return;
    pl_buf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

void pl_buf_add_str(pl_buf_t *b, const char *s)
{
    pl_buf_add(b, s, strlen(s));
}

void pl_buf_printf(pl_buf_t *b, const char *fmt, ...)
{
    /* Try in the space there is; if it did not fit, grow to the size
     * vsnprintf reported and format again. */
    pl_buf_reserve(b, 64);
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (n < 0)
            return; /* an encoding error: append nothing */
        if ((size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        pl_buf_reserve(b, (size_t)n + 1);
    }
}

char *pl_buf_cstr(pl_buf_t *b)
{
    pl_buf_reserve(b, 1);
    b->p[b->n] = '\0';
    return b->p;
}

void pl_buf_reset(pl_buf_t *b)
{
    b->n = 0;
}

void pl_buf_free(pl_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}
