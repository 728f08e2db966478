/*
 * UTF-8 validation, the one both programs use: the WebSocket codec checks
 * text frames incrementally across fragments, the gateway checks strings
 * it stores, the archiver checks stream entries before they become rows.
 *
 * Well-formed means RFC 3629: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. NUL is a valid character.
 * Every call returns 0 for valid and -1 for invalid (never a boolean).
 */
#ifndef PL_UTF8_H
#define PL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Incremental validator. Zero-initialise; feed any split of the bytes;
 * the text is valid iff every feed returned 0 and, at the end,
 * pl_utf8_complete() is true. */
typedef struct pl_utf8 {
    uint32_t need;  /* continuation bytes still expected */
    uint32_t lower; /* allowed range for the next continuation byte */
    uint32_t upper;
} pl_utf8_t;

/* Returns 0 while the bytes so far can start valid UTF-8, -1 otherwise
 * (the state is then unspecified). */
int pl_utf8_feed(pl_utf8_t *u, const void *p, size_t n);
/* True (1) if no code point is left unfinished. */
int pl_utf8_complete(const pl_utf8_t *u);
/* Whole-buffer check: 0 if p[0..n) is valid UTF-8, else -1. */
int pl_utf8_validate(const void *p, size_t n);
/* Whole-buffer check that also counts characters (code points) into
 * *chars, for limits given in characters: 0 or -1 (*chars untouched). */
int pl_utf8_chars(const void *p, size_t n, size_t *chars);

#endif
