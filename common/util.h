/*
 * Small helpers every Parley program uses: allocation that never returns
 * NULL, clocks, randomness and the return codes shared by parsers.
 */
#ifndef PL_UTIL_H
#define PL_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Return codes: 0 / -1 for most calls; parsers also use PL_AGAIN. */
#define PL_OK 0
#define PL_ERR (-1)
#define PL_AGAIN (-2) /* need more bytes */

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Allocation: out of memory aborts the process with a log line, so call
 * sites never check for NULL. */
void *pl_xmalloc(size_t n);
void *pl_xcalloc(size_t nmemb, size_t size);
void *pl_xrealloc(void *p, size_t n);
char *pl_xstrdup(const char *s);
char *pl_xstrndup(const char *s, size_t n);

/* Wall clock in unix milliseconds (for message timestamps). */
uint64_t pl_now_ms(void);
/* Monotonic milliseconds (for timeouts and latency). */
uint64_t pl_mono_ms(void);

/* Fills buf with n bytes from the kernel's CSPRNG (getrandom); aborts if
 * the kernel cannot provide them. */
void pl_random_bytes(void *buf, size_t n);

/* Writes 2*n lowercase hex digits and a NUL to out. */
void pl_hex(const void *in, size_t n, char *out);

#endif
