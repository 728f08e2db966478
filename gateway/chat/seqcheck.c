/*
 * Duplicate or seq regression (seqcheck.h): a small ring of the last
 * (seq, msg_id) pairs a stream delivered plus its newest timestamp.
 */
#include "seqcheck.h"

#include <string.h>

static const char *find(const char *p, size_t n, const char *pat)
{
    return memmem(p, n, pat, strlen(pat));
}

int pl_seqcheck_parse(const void *buf, size_t n, uint64_t *id, int64_t *ts)
{
    const char *p = buf, *end = p + n;
    *id = 0;
    *ts = 0;
    /* the send script writes {"ev":"msg","room":R,"seq":N,"msg_id":"X",
     * "from":"U","text":T,"ts":N}; a quote inside R or T is escaped, so
     * neither pattern can start inside them */
    const char *m = find(p, n, ",\"msg_id\":\"");
    if (m == NULL)
        return -1;
    m += 11;
    uint64_t v = 0;
    int digits = 0;
    for (; m < end && digits < 16; m++, digits++) {
        char ch = *m;
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0)
            break;
        v = v << 4 | (uint64_t)d;
    }
    /* ts comes last: search from the end of msg_id on */
    const char *t = NULL;
    for (const char *s = m; s < end;) {
        const char *hit = find(s, (size_t)(end - s), ",\"ts\":");
        if (hit == NULL)
            break;
        t = hit;
        s = hit + 1;
    }
    if (digits == 0 || v == 0 || t == NULL)
        return -1;
    int64_t tv = 0;
    int tdigits = 0;
    for (t += 6; t < end && *t >= '0' && *t <= '9' && tdigits < 18; t++, tdigits++)
        tv = tv * 10 + (*t - '0');
    if (tdigits == 0)
        return -1;
    *id = v;
    *ts = tv;
    return 0;
}

void pl_seqcheck_note(pl_seqcheck_t *c, int64_t seq, uint64_t id, int64_t ts)
{
    c->seq[c->next] = seq;
    c->id[c->next] = id;
    c->next = (c->next + 1) % PL_SEQCHECK_N;
    if (ts > c->last_ts)
        c->last_ts = ts;
}

pl_seq_verdict_t pl_seqcheck_old(const pl_seqcheck_t *c, int64_t seq, uint64_t id, int64_t ts)
{
    if (id == 0)
        return PL_SEQ_DUP;
    for (unsigned i = 0; i < PL_SEQCHECK_N; i++)
        if (c->seq[i] == seq && seq > 0)
            return c->id[i] == id ? PL_SEQ_DUP : PL_SEQ_REGRESSION;
    return c->last_ts > 0 && ts > c->last_ts ? PL_SEQ_REGRESSION : PL_SEQ_DUP;
}
