/*
 * Stream entry IDs (see streamid.h).
 */
#include "streamid.h"
#include "parse.h"

#include <stdio.h>
#include <string.h>

int pl_arch_stream_id_parse(const char *s, size_t n, pl_arch_stream_id_t *id)
{
    const char *dash = memchr(s, '-', n);
    if (dash == NULL) {
        id->seq = 0;
        return pl_parse_u64(s, n, &id->ms);
    }
    if (pl_parse_u64(s, (size_t)(dash - s), &id->ms) < 0)
        return -1;
    return pl_parse_u64(dash + 1, n - (size_t)(dash - s) - 1, &id->seq);
}

int pl_arch_stream_id_cmp(pl_arch_stream_id_t a, pl_arch_stream_id_t b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

pl_arch_stream_id_t pl_arch_stream_id_next(pl_arch_stream_id_t id)
{
    if (id.seq == UINT64_MAX) {
        id.ms++;
        id.seq = 0;
    } else {
        id.seq++;
    }
    return id;
}

void pl_arch_stream_id_format(pl_arch_stream_id_t id, char *out, size_t len)
{
    snprintf(out, len, "%llu-%llu", (unsigned long long)id.ms, (unsigned long long)id.seq);
}
