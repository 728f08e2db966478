/*
 * History reads from Redis and the older part from MySQL (see history.h).
 *
 * Why a page read from Redis first, then MySQL below the oldest Redis seq,
 * has no hole even while the archiver is behind: the archiver raises
 * parley:{room}:archived only after COMMIT, and only over a contiguous
 * prefix of seqs (every seq <= archived is in MySQL). With MySQL on, the
 * send script trims the recent zset only below min(seq - history_recent,
 * archived), so Redis always holds a contiguous suffix of the room that
 * includes every seq > archived. When Redis returns less than a page with
 * oldest seq L, everything below L is therefore <= archived, i.e. in
 * MySQL. A trim between our Redis read and our MySQL read only removes
 * rows <= archived, which were committed before the marker moved, so the
 * MySQL read sees them. pl_history_contiguous() checks the join anyway
 * and the caller answers unavailable rather than a page with a hole.
 */
#include "history.h"
#include "log.h"
#include "util.h"
#include "utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pl_history_page_free(pl_history_page_t *page)
{
    free(page->v);
    free(page->buf);
    page->v = NULL;
    page->buf = NULL;
    page->n = 0;
}

void pl_history_page_keep(pl_history_page_t *dst, const pl_history_page_t *src)
{
    size_t bytes = 0;
    for (size_t i = 0; i < src->n; i++)
        bytes += src->v[i].len + 1 + (src->v[i].node ? strlen(src->v[i].node) + 1 : 0);
    dst->n = src->n;
    dst->more = src->more;
    dst->v = pl_xcalloc(src->n + 1, sizeof(*dst->v));
    dst->buf = pl_xmalloc(bytes + 1);
    char *p = dst->buf;
    for (size_t i = 0; i < src->n; i++) {
        const pl_hmsg_t *h = &src->v[i];
        dst->v[i] = *h;
        memcpy(p, h->json, h->len);
        p[h->len] = '\0';
        dst->v[i].json = p;
        p += h->len + 1;
        if (h->node) {
            size_t l = strlen(h->node) + 1;
            memcpy(p, h->node, l);
            dst->v[i].node = p;
            p += l;
        }
    }
}

/* What the encoder writes for each byte below 0x20 after a backslash, 'u'
 * meaning \u00XX; the rest pass through unchanged (jansson's dump without
 * JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH: '/', 0x7f, U+2028 stay raw). */
static const char ctl_esc[32] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
};

int pl_history_json_string(pl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (pl_utf8_validate((const uint8_t *)s, n) < 0)
        return -1;
    pl_buf_reserve(b, 6 * n + 2);
    char *o = b->p + b->n;
    *o++ = '"';
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\')
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p == end)
            break;
        unsigned char c = *p++;
        *o++ = '\\';
        if (c >= 0x20) {
            *o++ = (char)c; /* '"' or '\\' */
        } else if (ctl_esc[c] != 'u') {
            *o++ = ctl_esc[c];
        } else {
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    return 0;
}

/* Reads a decimal number ending at ':'; returns the position after it or
 * NULL. */
static const char *num(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9' && p - s < 19)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == s || p >= end || *p != ':')
        return NULL;
    *out = v;
    return p + 1;
}

int pl_history_member_parse(const char *m, size_t n, const char **json, size_t *json_len,
                            const char **node, size_t *node_len, int *worker, uint64_t *conn)
{
    *json = m;
    *json_len = n;
    const char *end = m + n, *p = m + 3;
    uint64_t c, w, nl;
    if (n < 3 || memcmp(m, "o1:", 3) != 0)
        return 0;
    if ((p = num(p, end, &c)) == NULL || (p = num(p, end, &w)) == NULL ||
        (p = num(p, end, &nl)) == NULL || nl > (uint64_t)(end - p) || w > INT32_MAX)
        return 0;
    *node = p;
    *node_len = (size_t)nl;
    *worker = (int)w;
    *conn = c;
    *json = p + nl;
    *json_len = (size_t)(end - *json);
    return 1;
}

typedef struct hreq {
    pl_history_fn cb;
    void *arg;
    int limit; /* > 0: newest-first reply of limit+1 to reverse; 0: oldest-first range */
} hreq_t;

/* The seq of a stored event: the script writes {"ev":"msg","room":R,"seq":N
 * and R is a JSON literal, inside which every '"' follows a backslash, so
 * the first ,"seq": is the field. Saves asking Redis for the scores (a
 * second reply object per message). Returns -1 if there is none. */
static int64_t event_seq(const char *json, size_t len)
{
    static const char pat[] = ",\"seq\":";
    const char *p = memmem(json, len, pat, sizeof(pat) - 1), *end = json + len;
    if (p == NULL)
        return -1;
    p += sizeof(pat) - 1;
    int64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9' && p - s < 18)
        v = v * 10 + (*p++ - '0');
    return p > s && p < end && (*p == ',' || *p == '}') ? v : -1;
}

/* The page lends the reply's bytes: each member's JSON is its suffix, so
 * it is NUL-terminated where hiredis ends the string. Only origins (not
 * NUL-terminated in the member) are copied, into page.buf. */
static void on_zrange(void *arg, redisReply *r)
{
    hreq_t *q = arg;
    pl_history_page_t page = {0};
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        q->cb(q->arg, -1, &page);
        free(q);
        return;
    }
    size_t n = r->elements, nodes = 0;
    page.v = pl_xcalloc(n + 1, sizeof(*page.v));
    for (size_t i = 0; i < n; i++) {
        redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        pl_hmsg_t *h = &page.v[page.n];
        const char *json, *node = NULL;
        size_t jl, nl = 0;
        if (pl_history_member_parse(m->str, m->len, &json, &jl, &node, &nl, &h->worker, &h->conn)) {
            h->node = node; /* provisional: copied below */
            nodes += nl + 1;
        }
        h->json = json;
        h->len = jl;
        if ((h->seq = event_seq(json, jl)) < 0) {
            pl_log_error("recent history member without a seq, page refused\tlen=%zu", m->len);
            pl_history_page_free(&page);
            q->cb(q->arg, -1, &page);
            free(q);
            return;
        }
        page.n++;
    }
    if (nodes) {
        char *p = page.buf = pl_xmalloc(nodes);
        for (size_t i = 0; i < page.n; i++) {
            pl_hmsg_t *h = &page.v[i];
            if (h->node == NULL)
                continue;
            /* the origin ends at the JSON: "<node><json>" */
            size_t nl = (size_t)(h->json - h->node);
            memcpy(p, h->node, nl);
            p[nl] = '\0';
            h->node = p;
            p += nl + 1;
        }
    }
    if (q->limit > 0) {
        /* newest first, one extra to know whether more exist */
        if (page.n > (size_t)q->limit) {
            page.more = 1;
            page.n--;
        }
        for (size_t i = 0; i < page.n / 2; i++) {
            pl_hmsg_t t = page.v[i];
            page.v[i] = page.v[page.n - 1 - i];
            page.v[page.n - 1 - i] = t;
        }
    }
    q->cb(q->arg, 0, &page);
    pl_history_page_free(&page);
    free(q);
}

/* Sends one 7-word ZRANGEBYSCORE-style command whose reply on_zrange turns
 * into a page for cb; limit is the page size the caller asked for (0 =
 * none: a range read). */
static int zrange(pl_bus_t *bus, const char *argv[7], int limit, pl_history_fn cb, void *arg)
{
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    hreq_t *q = pl_xcalloc(1, sizeof(*q));
    q->cb = cb;
    q->arg = arg;
    q->limit = limit;
    if (pl_bus_command(bus, on_zrange, q, 7, argv, lens) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

int pl_history_recent(pl_bus_t *bus, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg)
{
    char key[PL_KEY_MAX], max[32], lim[16];
    pl_key_recent(key, room);
    if (before > 0)
        snprintf(max, sizeof(max), "(%" PRId64, before);
    else
        snprintf(max, sizeof(max), "+inf");
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *argv[] = {"ZREVRANGEBYSCORE", key, max, "-inf", "LIMIT", "0", lim};
    return zrange(bus, argv, limit, cb, arg);
}

int pl_history_range(pl_bus_t *bus, const char *room, int64_t after, int64_t upto, int limit,
                     pl_history_fn cb, void *arg)
{
    char key[PL_KEY_MAX], min[32], max[32], lim[16];
    pl_key_recent(key, room);
    snprintf(min, sizeof(min), "(%" PRId64, after);
    if (upto >= 0)
        snprintf(max, sizeof(max), "%" PRId64, upto);
    else
        snprintf(max, sizeof(max), "+inf");
    snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 1);
    /* bounded: one reply never holds more than limit messages */
    const char *argv[] = {"ZRANGEBYSCORE", key, min, max, "LIMIT", "0", lim};
    return zrange(bus, argv, 0, cb, arg);
}

int pl_history_older_needed(const pl_history_page_t *page, int64_t before, int limit,
                            int64_t *older_before, int *older_limit)
{
    if (page->more || page->n >= (size_t)limit)
        return 0; /* Redis had a full page */
    /* The oldest message Redis has, or the request's upper bound when it
     * had none; seqs start at 1, so nothing older exists below 2. */
    int64_t oldest = page->n > 0 ? page->v[0].seq : (before > 0 ? before : INT64_MAX);
    if (oldest <= 1)
        return 0;
    *older_before = oldest;
    *older_limit = limit - (int)page->n;
    return 1;
}

/* An integer in decimal, as the script's string.format('%d'). */
static size_t put_i64(char *o, int64_t v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        o[k++] = '-';
    while (n > 0)
        o[k++] = tmp[--n];
    return k;
}

#define ADD_LIT(b, s) pl_buf_add((b), (s), sizeof(s) - 1)

int pl_history_event_append(pl_buf_t *b, const char *room_json, size_t room_json_len, int64_t seq,
                            const char *msg_id, size_t msg_id_len, const char *from,
                            size_t from_len, const char *text, size_t text_len, int64_t ts)
{
    size_t start = b->n;
    pl_buf_reserve(b, room_json_len + 96);
    ADD_LIT(b, "{\"ev\":\"msg\",\"room\":");
    pl_buf_add(b, room_json, room_json_len);
    ADD_LIT(b, ",\"seq\":");
    b->n += put_i64(b->p + b->n, seq);
    ADD_LIT(b, ",\"msg_id\":");
    if (pl_history_json_string(b, msg_id, msg_id_len) < 0)
        goto bad;
    ADD_LIT(b, ",\"from\":");
    if (pl_history_json_string(b, from, from_len) < 0)
        goto bad;
    ADD_LIT(b, ",\"text\":");
    if (pl_history_json_string(b, text, text_len) < 0)
        goto bad;
    pl_buf_reserve(b, 32);
    ADD_LIT(b, ",\"ts\":");
    b->n += put_i64(b->p + b->n, ts);
    ADD_LIT(b, "}");
    return 0;
bad:
    b->n = start;
    return -1;
}

char *pl_history_event_json(const char *room, size_t room_len, int64_t seq, const char *msg_id,
                            size_t msg_id_len, const char *from, size_t from_len, const char *text,
                            size_t text_len, int64_t ts, size_t *len)
{
    pl_buf_t rj = {0}, b = {0};
    if (pl_history_json_string(&rj, room, room_len) < 0 ||
        pl_history_event_append(&b, rj.p, rj.n, seq, msg_id, msg_id_len, from, from_len, text,
                                text_len, ts) < 0) {
        free(rj.p);
        free(b.p);
        return NULL;
    }
    free(rj.p);
    pl_buf_add(&b, "", 1);
    *len = b.n - 1;
    return b.p;
}

int pl_history_contiguous(const pl_history_page_t *older, const pl_history_page_t *recent)
{
    if (older == NULL || older->n == 0 || recent == NULL || recent->n == 0)
        return 1;
    return older->v[older->n - 1].seq + 1 == recent->v[0].seq;
}

typedef struct oreq {
    pl_history_fn cb;
    void *arg;
    char room[PL_ROOM_MAX + 1];
    int limit;
} oreq_t;

/* The whole page is built in one buffer, the room escaped once. */
static void on_db_history(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    oreq_t *o = arg;
    pl_history_page_t page = {0};
    if (status < 0) {
        pl_log_warn("mysql history failed\troom=%s status=%s", o->room, pl_db_status_name(status));
        o->cb(o->arg, -1, &page);
        free(o);
        return;
    }
    pl_buf_t b = {0}, rj = {0};
    size_t room_len = strlen(o->room), guess = 0;
    for (size_t i = 0; i < n; i++)
        guess += 112 + 2 * room_len + rows[i].msg_id_len + rows[i].sender_len + rows[i].text_len;
    pl_buf_reserve(&b, guess);
    (void)pl_history_json_string(&rj, o->room, room_len); /* from a valid command: UTF-8 */
    page.v = pl_xcalloc(n + 1, sizeof(*page.v));
    for (size_t i = 0; i < n; i++) {
        const pl_db_row_t *r = &rows[i];
        size_t at = b.n;
        if (pl_history_event_append(&b, rj.p, rj.n, (int64_t)r->seq, r->msg_id, r->msg_id_len,
                                    r->sender, r->sender_len, r->text, r->text_len,
                                    (int64_t)r->ts_ms) < 0) {
            pl_log_error("archived message is not valid UTF-8\troom=%s seq=%" PRIu64, o->room,
                         r->seq);
            free(b.p);
            free(rj.p);
            pl_history_page_free(&page);
            o->cb(o->arg, -1, &page);
            free(o);
            return;
        }
        pl_buf_add(&b, "", 1); /* each event NUL-terminated */
        page.v[page.n].seq = (int64_t)r->seq;
        page.v[page.n].json = (const char *)(uintptr_t)at; /* offset until b stops moving */
        page.v[page.n].len = b.n - 1 - at;
        page.n++;
    }
    for (size_t i = 0; i < page.n; i++)
        page.v[i].json = b.p + (uintptr_t)page.v[i].json;
    page.buf = b.p;
    free(rj.p);
    page.more = n >= (size_t)o->limit;
    o->cb(o->arg, 0, &page);
    pl_history_page_free(&page);
    free(o);
}

void pl_history_older(pl_db_t *db, const char *room, int64_t before, int limit, pl_history_fn cb,
                      void *arg)
{
    if (db == NULL) {
        pl_history_page_t page = {0};
        cb(arg, 0, &page);
        return;
    }
    oreq_t *o = pl_xcalloc(1, sizeof(*o));
    o->cb = cb;
    o->arg = arg;
    o->limit = limit;
    snprintf(o->room, sizeof(o->room), "%s", room);
    uint64_t b = before > 0 ? (uint64_t)before : (uint64_t)INT64_MAX;
    (void)pl_db_history(db, room, strlen(room), b, (unsigned)limit, on_db_history, o);
}

typedef struct freq {
    pl_floor_fn cb;
    void *arg;
    int64_t hint;
    char room[PL_ROOM_MAX + 1];
} freq_t;

static void on_db_max_seq(void *arg, int status, uint64_t max_seq)
{
    freq_t *f = arg;
    if (status < 0) {
        pl_log_warn("mysql max(seq) failed, send refused\troom=%s status=%s", f->room,
                    pl_db_status_name(status));
        f->cb(f->arg, -1, 0);
    } else {
        int64_t m = (int64_t)max_seq;
        f->cb(f->arg, 0, m > f->hint ? m : f->hint);
    }
    free(f);
}

void pl_history_seq_floor(pl_db_t *db, const char *room, int64_t hint, pl_floor_fn cb, void *arg)
{
    if (hint < 0)
        hint = 0;
    if (db == NULL) {
        cb(arg, 0, hint);
        return;
    }
    freq_t *f = pl_xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->arg = arg;
    f->hint = hint;
    snprintf(f->room, sizeof(f->room), "%s", room);
    (void)pl_db_max_seq(db, room, strlen(room), on_db_max_seq, f);
}
