/*
 * Parsing numbers and config values from text, the one set both programs
 * use: stream IDs, ports and database numbers in URLs, stream entry
 * fields, config integers, sizes, durations and booleans. All strict: the
 * whole input must be the value (no spaces, no trailing junk), overflow is
 * an error, and each returns 0 or -1 (*out untouched on -1).
 */
#ifndef PL_PARSE_H
#define PL_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* s[0..n) is 1 to 20 decimal digits whose value fits in 64 bits. No sign:
 * "-1" and "+1" are errors. s need not be NUL-terminated. */
int pl_parse_u64(const char *s, size_t n, uint64_t *out);
/* An optional '+' or '-', then decimal digits, within int64_t (so
 * "-9223372036854775808" is the lowest). s need not be NUL-terminated. */
int pl_parse_i64(const char *s, size_t n, int64_t *out);

/* A duration in milliseconds: digits with an optional unit ms, s, m, h or
 * d (any case); a bare number is seconds. */
int pl_parse_duration_ms(const char *s, int64_t *out);
/* A size in bytes: digits with an optional unit b, k/kb/kib, m/mb/mib or
 * g/gb/gib (any case; all powers of 1024); a bare number is bytes. */
int pl_parse_size(const char *s, int64_t *out);
/* yes/true/on/1 or no/false/off/0 (any case) into *out as 1 or 0. */
int pl_parse_bool(const char *s, int *out);

#endif
