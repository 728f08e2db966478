/*
 * History by seq window, time and sender (see hquery.h).
 *
 * Why the answer is exact (no hole, nothing twice) across Redis and MySQL,
 * for any filter. The send script trims a room's recent zset only below
 * min(seq - history_recent, archived), and the archiver raises the
 * `archived` marker only after COMMIT over a contiguous prefix of seqs
 * (store/history.c's top comment). So at any instant:
 *   - every seq <= archived is committed in MySQL, and
 *   - every seq > archived is in the recent zset.
 * One Lua call reads the marker A and the recent members above max(A,
 * after) together (atomically: a trim cannot fall between the two reads).
 * The room's messages are then exactly MySQL's rows with seq <= A plus
 * that Redis set; MySQL rows <= A were committed before the marker moved,
 * so the later MySQL read sees them all. The filters (sender, time) are
 * applied to both parts (in SQL, and here on the stored JSON), so a
 * filtered page is the union of two exact filtered parts: no contiguity
 * of seqs is assumed, which is why filters are safe here while the plain
 * form's seam check (pl_history_contiguous) needs gapless seqs.
 *
 * When the marker is missing (a room whose keys expired, or one whose
 * seq key predates the marker) nothing is known about the split: MySQL
 * is asked without an upper seq bound, Redis for everything in the
 * window, and the two are merged by seq with duplicates dropped (a
 * message in both has the same bytes). Without MySQL, Redis is all.
 *
 * Limits: both parts are asked for limit + 1 matches in the query's
 * direction; the merge keeps limit and `complete` says whether a
 * (limit+1)th existed. MySQL is skipped when the Redis part alone decides
 * the page (newest-first with limit + 1 matches above A) or when the window
 * lies wholly above A. With a sender or time filter Redis cannot LIMIT
 * (the zset is scored by seq only), so the whole recent set above A in the
 * window is read and filtered here: at most history_recent messages plus
 * the archiver's lag.
 *
 * For unfiltered windows the union must also be gapless (seqs are): a gap
 * answers unavailable (PL_HQ_EHOLE) rather than a page with a hole.
 *
 * The cross-room form (room "") reads MySQL only: the archive is the one
 * place indexed by sender across rooms (messages_sender_time). Messages
 * not yet archived are not in it; docs/protocol.md says so.
 */
#include "hquery.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: recent, archived. ARGV: use marker (1/0), after, upper bound
 * ("(N" or "+inf"), limit (0 = none), forward (1/0). Returns {A or -1,
 * members in the direction asked}. */
static const char snapshot_lua[] =
    "local a = -1\n"
    "if ARGV[1] == '1' then a = tonumber(redis.call('GET', KEYS[2]) or '-1') or -1 end\n"
    "local lo = tonumber(ARGV[2])\n"
    "if a > lo then lo = a end\n"
    "local los = '(' .. string.format('%d', lo)\n"
    "local r\n"
    "if ARGV[5] == '1' then\n"
    "  if ARGV[4] == '0' then r = redis.call('ZRANGEBYSCORE', KEYS[1], los, ARGV[3])\n"
    "  else r = redis.call('ZRANGEBYSCORE', KEYS[1], los, ARGV[3], 'LIMIT', 0, ARGV[4]) end\n"
    "else\n"
    "  if ARGV[4] == '0' then r = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[3], los)\n"
    "  else r = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[3], los, 'LIMIT', 0, ARGV[4]) end\n"
    "end\n"
    "return {a, r}\n";

typedef struct run {
    pl_hq_t q;
    pl_db_t *db;
    pl_hq_fn cb;
    void *arg;
    int64_t marker;          /* archived, -1 when missing or not used */
    pl_history_page_t redis; /* the Redis part, filtered, oldest first (kept) */
    int redis_more;          /* Redis had more than limit matches in the direction */
} run_t;

static int filtered(const pl_hq_t *q)
{
    return q->sender[0] || q->from_ts >= 0 || q->until_ts >= 0;
}

/* An integer field of a stored event: the first `pat` (e.g. ,"seq":) -
 * inside a JSON string every '"' follows a backslash, so ,"name": only
 * matches a field. -1 if absent. */
static int64_t int_field(const char *json, size_t len, const char *pat)
{
    size_t pl = strlen(pat);
    const char *p = memmem(json, len, pat, pl), *end = json + len;
    if (p == NULL)
        return -1;
    p += pl;
    int64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9' && p - s < 18)
        v = v * 10 + (*p++ - '0');
    return p > s && p < end && (*p == ',' || *p == '}') ? v : -1;
}

int pl_hq_match(const pl_hq_t *q, const char *json, size_t len)
{
    if (q->from_ts >= 0 || q->until_ts >= 0) {
        int64_t ts = int_field(json, len, ",\"ts\":");
        if (ts < 0 || (q->from_ts >= 0 && ts < q->from_ts) ||
            (q->until_ts >= 0 && ts > q->until_ts))
            return 0;
    }
    if (q->sender[0]) {
        /* the script writes "from":"<user id>" raw: user ids need no escaping */
        static const char pat[] = ",\"from\":\"";
        const char *p = memmem(json, len, pat, sizeof(pat) - 1);
        size_t sl = strlen(q->sender);
        if (p == NULL)
            return 0;
        p += sizeof(pat) - 1;
        if ((size_t)(json + len - p) < sl + 1 || memcmp(p, q->sender, sl) != 0 || p[sl] != '"')
            return 0;
    }
    return 1;
}

static void finish(run_t *r, int status, const pl_hq_result_t *res)
{
    r->cb(r->arg, status, res);
    pl_history_page_free(&r->redis);
    free(r);
}

/* Reverses v[0..n). */
static void reverse(pl_hmsg_t *v, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        pl_hmsg_t t = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = t;
    }
}

/* Merges the MySQL part (oldest first, may be NULL) with the kept Redis
 * part, drops duplicates, cuts to limit in the query's direction and
 * answers. */
static void answer(run_t *r, const pl_history_page_t *m, int m_more)
{
    size_t cap = r->redis.n + (m ? m->n : 0);
    pl_history_page_t out = {0};
    out.v = pl_xcalloc(cap + 1, sizeof(*out.v));
    size_t i = 0, j = 0;
    while ((m && i < m->n) || j < r->redis.n) {
        const pl_hmsg_t *a = m && i < m->n ? &m->v[i] : NULL;
        const pl_hmsg_t *b = j < r->redis.n ? &r->redis.v[j] : NULL;
        if (a && b && a->seq == b->seq) {
            out.v[out.n++] = *b;
            i++;
            j++;
        } else if (b == NULL || (a && a->seq < b->seq)) {
            out.v[out.n++] = *a;
            i++;
        } else {
            out.v[out.n++] = *b;
            j++;
        }
    }
    size_t lim = (size_t)r->q.limit;
    int complete = !(m_more || r->redis_more || out.n > lim);
    if (out.n > lim) {
        if (r->q.forward) {
            out.n = lim;
        } else {
            memmove(out.v, out.v + (out.n - lim), lim * sizeof(*out.v));
            out.n = lim;
        }
    }
    if (!filtered(&r->q)) {
        for (size_t k = 1; k < out.n; k++) {
            if (out.v[k].seq != out.v[k - 1].seq + 1) {
                pl_log_error("history window with a hole, refused\troom=%s seq=%" PRId64
                             " next=%" PRId64,
                             r->q.room, out.v[k - 1].seq, out.v[k].seq);
                free(out.v);
                finish(r, PL_HQ_EHOLE, NULL);
                return;
            }
        }
    }
    pl_hq_result_t res = {.page = &out, .complete = complete};
    finish(r, 0, &res);
    free(out.v);
}

/* Rebuilds rows as stored events (one buffer), oldest first. room_json is
 * the room's literal, or NULL for rows that carry their own room. */
static int rows_to_page(const pl_db_row_t *rows, size_t n, const char *room,
                        pl_history_page_t *page)
{
    pl_buf_t b = {0}, rj = {0};
    page->v = pl_xcalloc(n + 1, sizeof(*page->v));
    page->n = 0;
    if (room)
        (void)pl_history_json_string(&rj, room, strlen(room));
    for (size_t i = 0; i < n; i++) {
        const pl_db_row_t *w = &rows[i];
        size_t at = b.n;
        if (room == NULL) {
            rj.n = 0;
            if (pl_history_json_string(&rj, w->room, w->room_len) < 0)
                goto bad;
        }
        if (pl_history_event_append(&b, rj.p, rj.n, (int64_t)w->seq, w->msg_id, w->msg_id_len,
                                    w->sender, w->sender_len, w->text, w->text_len,
                                    (int64_t)w->ts_ms) < 0)
            goto bad;
        pl_buf_add(&b, "", 1);
        page->v[page->n].seq = (int64_t)w->seq;
        page->v[page->n].json = (const char *)(uintptr_t)at;
        page->v[page->n].len = b.n - 1 - at;
        page->n++;
    }
    for (size_t i = 0; i < page->n; i++)
        page->v[i].json = b.p + (uintptr_t)page->v[i].json;
    page->buf = b.p;
    free(rj.p);
    return 0;
bad:
    pl_log_error("archived message is not valid UTF-8, history refused");
    free(b.p);
    free(rj.p);
    pl_history_page_free(page);
    return -1;
}

static void on_mysql(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    run_t *r = arg;
    if (status < 0) {
        pl_log_warn("mysql history query failed\troom=%s status=%s", r->q.room,
                    pl_db_status_name(status));
        finish(r, PL_HQ_EMYSQL, NULL);
        return;
    }
    pl_history_page_t m = {0};
    if (rows_to_page(rows, n, r->q.room, &m) < 0) {
        finish(r, PL_HQ_EMYSQL, NULL);
        return;
    }
    /* limit + 1 were asked for: a full answer means more exist beyond */
    int more = n > (size_t)r->q.limit;
    answer(r, &m, more);
    pl_history_page_free(&m);
}

static void on_cross(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    run_t *r = arg;
    if (status < 0) {
        pl_log_warn("mysql own-history query failed\tsender=%s status=%s", r->q.sender,
                    pl_db_status_name(status));
        finish(r, PL_HQ_EMYSQL, NULL);
        return;
    }
    /* newest first in SQL, delivered oldest first: an extra row is v[0] */
    size_t skip = n > (size_t)r->q.limit ? 1 : 0;
    pl_history_page_t m = {0};
    if (rows_to_page(rows + skip, n - skip, NULL, &m) < 0) {
        finish(r, PL_HQ_EMYSQL, NULL);
        return;
    }
    pl_hq_result_t res = {.page = &m, .complete = !skip};
    if (skip && m.n > 0) {
        res.next_ts = (int64_t)rows[1].ts_ms;
        res.next_room = rows[1].room;
        res.next_seq = (int64_t)rows[1].seq;
    }
    finish(r, 0, &res);
    pl_history_page_free(&m);
}

/* A string as a hex literal in the column's character set. */
static void add_hex(pl_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    pl_buf_add_str(b, "_utf8mb4 X'");
    pl_buf_reserve(b, 2 * n + 1);
    pl_hex(s, n, b->p + b->n);
    b->n += 2 * n;
    pl_buf_add_str(b, "'");
}

/* created_at for a unix ms value: the epoch plus a duration, as db.c's
 * history query reads it (no time zone involved). */
static void add_time(pl_buf_t *b, int64_t ms)
{
    pl_buf_printf(b, "TIMESTAMPADD(MICROSECOND,%" PRId64 "000,'1970-01-01')", ms);
}

/* The SQL of both forms, every value an integer or a hex literal. The
 * index each uses is in deploy/sql/002_history_indexes.sql. */
static void build_sql(const run_t *r, pl_buf_t *b)
{
    const pl_hq_t *q = &r->q;
    int cross = q->room[0] == '\0';
    pl_buf_printf(b,
                  "SELECT seq,msg_id,sender,text,"
                  "TIMESTAMPDIFF(MICROSECOND,'1970-01-01',created_at) DIV 1000%s"
                  " FROM messages%s WHERE ",
                  cross ? ",room" : "",
                  /* with a time range too the optimizer prefers walking the
                   * primary key (70 ms on the bench's million rows) over the
                   * sender's 40 rows (0.5 ms): tests/bench/history_explain.sh */
                  !cross && q->sender[0] ? " FORCE INDEX (messages_room_sender)" : "");
    if (cross) {
        pl_buf_add_str(b, "sender=");
        add_hex(b, q->sender);
    } else {
        pl_buf_add_str(b, "room=");
        add_hex(b, q->room);
        if (q->sender[0]) {
            pl_buf_add_str(b, " AND sender=");
            add_hex(b, q->sender);
        }
        if (q->after > 0)
            pl_buf_printf(b, " AND seq>%" PRId64, q->after);
        if (q->before > 0)
            pl_buf_printf(b, " AND seq<%" PRId64, q->before);
        if (r->marker >= 0)
            pl_buf_printf(b, " AND seq<=%" PRId64, r->marker);
    }
    if (q->from_ts >= 0) {
        pl_buf_add_str(b, " AND created_at>=");
        add_time(b, q->from_ts);
    }
    if (q->until_ts >= 0) {
        pl_buf_add_str(b, " AND created_at<=");
        add_time(b, q->until_ts);
    }
    if (cross && q->has_cursor) {
        /* strictly older than the cursor in (created_at, room, seq) order;
         * the leading created_at<= keeps it a range on the index */
        pl_buf_add_str(b, " AND created_at<=");
        add_time(b, q->cur_ts);
        pl_buf_add_str(b, " AND (created_at<");
        add_time(b, q->cur_ts);
        pl_buf_add_str(b, " OR room<");
        add_hex(b, q->cur_room);
        pl_buf_add_str(b, " OR (room=");
        add_hex(b, q->cur_room);
        pl_buf_printf(b, " AND seq<%" PRId64 "))", q->cur_seq);
    }
    if (cross)
        pl_buf_add_str(b, " ORDER BY created_at DESC,room DESC,seq DESC");
    else if (q->forward)
        pl_buf_add_str(b, " ORDER BY seq");
    else
        pl_buf_add_str(b, " ORDER BY seq DESC");
    pl_buf_printf(b, " LIMIT %d", q->limit + 1);
}

static void ask_mysql(run_t *r)
{
    pl_buf_t sql = {0};
    build_sql(r, &sql);
    int cross = r->q.room[0] == '\0';
    (void)pl_db_select(r->db, sql.p, sql.n, !cross && r->q.forward, cross ? on_cross : on_mysql, r);
    free(sql.p);
}

static void on_snapshot(void *arg, redisReply *rep)
{
    run_t *r = arg;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        finish(r, PL_HQ_EREDIS, NULL);
        return;
    }
    r->marker = r->db ? (int64_t)rep->element[0]->integer : -1;
    redisReply *a = rep->element[1];
    pl_history_page_t page = {0};
    page.v = pl_xcalloc(a->elements + 1, sizeof(*page.v));
    size_t matches = 0;
    for (size_t i = 0; i < a->elements; i++) {
        redisReply *m = a->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        const char *json, *node;
        size_t jl, nl;
        int w;
        uint64_t c;
        (void)pl_history_member_parse(m->str, m->len, &json, &jl, &node, &nl, &w, &c);
        int64_t seq = int_field(json, jl, ",\"seq\":");
        if (seq < 0) {
            pl_log_error("recent history member without a seq, refused\troom=%s", r->q.room);
            free(page.v);
            finish(r, PL_HQ_EREDIS, NULL);
            return;
        }
        if (!pl_hq_match(&r->q, json, jl))
            continue;
        if (++matches > (size_t)r->q.limit) {
            r->redis_more = 1; /* in the query's direction: enough without MySQL */
            break;
        }
        page.v[page.n].seq = seq;
        page.v[page.n].json = json;
        page.v[page.n].len = jl;
        page.n++;
    }
    if (!r->q.forward)
        reverse(page.v, page.n);
    pl_history_page_keep(&r->redis, &page);
    free(page.v);
    /* MySQL only when rows at or below the marker can be on the page */
    int need = r->db != NULL;
    if (r->marker >= 0 && (r->marker == 0 || r->marker <= r->q.after))
        need = 0; /* the window lies wholly above the marker */
    if (!r->q.forward && r->redis_more)
        need = 0; /* the newest limit + 1 are all above the marker */
    if (need) {
        ask_mysql(r);
        return;
    }
    answer(r, NULL, 0);
}

int pl_hq_run(pl_bus_t *bus, pl_db_t *db, const pl_hq_t *q, pl_hq_fn cb, void *arg)
{
    run_t *r = pl_xcalloc(1, sizeof(*r));
    r->q = *q;
    r->db = db;
    r->cb = cb;
    r->arg = arg;
    r->marker = -1;
    if (q->room[0] == '\0') {
        if (db == NULL) {
            free(r);
            return -2;
        }
        ask_mysql(r);
        return 0;
    }
    char recent[PL_KEY_MAX], archived[PL_KEY_MAX], after[24], hi[24], lim[16];
    pl_key_recent(recent, q->room);
    pl_key_archived(archived, q->room);
    snprintf(after, sizeof(after), "%" PRId64, q->after > 0 ? q->after : 0);
    if (q->before > 0)
        snprintf(hi, sizeof(hi), "(%" PRId64, q->before);
    else
        snprintf(hi, sizeof(hi), "+inf");
    /* filters cannot be applied by Redis: read the whole window then */
    snprintf(lim, sizeof(lim), "%d", filtered(q) ? 0 : q->limit + 1);
    const char *argv[] = {"EVAL",         snapshot_lua, "2", recent, archived,
                          db ? "1" : "0", after,        hi,  lim,    q->forward ? "1" : "0"};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(argv[i]);
    if (pl_bus_command(bus, on_snapshot, r, 10, argv, lens) < 0) {
        free(r);
        return -1;
    }
    return 0;
}
