/*
 * Strict number and value parsing (see parse.h). Digits are read by hand
 * rather than with strtoll/strtoull, which accept leading spaces and a
 * sign, stop silently at junk and need a NUL-terminated string.
 */
#include "parse.h"
#include "util.h"

#include <string.h>
#include <strings.h>

int pl_parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int pl_parse_i64(const char *s, size_t n, int64_t *out)
{
    int neg = n > 0 && s[0] == '-';
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        s++;
        n--;
    }
    uint64_t v;
    if (pl_parse_u64(s, n, &v) < 0)
        return -1;
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        /* 2^63 has no positive int64_t to negate */
        *out = v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    }
    return 0;
}

/* Digits followed by an optional unit from units[] (scaled by scales[]);
 * bare digits are scaled by `bare`. */
static int parse_scaled(const char *s, const char *const *units, const int64_t *scales,
                        int64_t bare, int64_t *out)
{
    size_t digits = 0;
    while (s[digits] >= '0' && s[digits] <= '9')
        digits++;
    int64_t v;
    if (digits == 0 || pl_parse_i64(s, digits, &v) < 0)
        return -1;
    const char *unit = s + digits;
    int64_t scale = bare;
    if (*unit != '\0') {
        int found = 0;
        for (int i = 0; units[i]; i++) {
            if (strcasecmp(unit, units[i]) == 0) {
                scale = scales[i];
                found = 1;
                break;
            }
        }
        if (!found)
            return -1;
    }
    if (v > INT64_MAX / scale)
        return -1;
    *out = v * scale;
    return 0;
}

int pl_parse_duration_ms(const char *s, int64_t *out)
{
    static const char *const units[] = {"ms", "s", "m", "h", "d", NULL};
    static const int64_t scales[] = {1, 1000, 60000, 3600000, 86400000};
    return parse_scaled(s, units, scales, 1000, out);
}

int pl_parse_size(const char *s, int64_t *out)
{
    static const char *const units[] = {"b",   "k", "kb", "kib", "m", "mb",
                                        "mib", "g", "gb", "gib", NULL};
    static const int64_t scales[] = {1,       1024,    1024,    1024,    1 << 20,
                                     1 << 20, 1 << 20, 1 << 30, 1 << 30, 1 << 30};
    return parse_scaled(s, units, scales, 1, out);
}

int pl_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < PL_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}
