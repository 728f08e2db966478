/*
 * Chat history (docs/protocol.md 1.5, 3.4): the history command. The
 * plain form (newest before a seq): the Redis part, then the MySQL part
 * below it when needed (both read by store/history.c), joined without a
 * hole. The other forms (after, around, from_ts/until_ts, sender, and the
 * cross-room own-messages form) are run by store/hquery.c; this file
 * checks permission and writes the reply.
 */
#include "auth.h"
#include "conn.h"
#include "chat.h"
#include "history.h"
#include "hquery.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADD_LIT(b, s) pl_buf_add((b), (s), sizeof(s) - 1)

/* History requests of this worker (one per process) waiting for MySQL,
 * each holding its Redis part: at most history_wait_max, the rest answer
 * unavailable at once (a stalled MySQL must not pile up megabytes). */
static int64_t waiting;

/* recent is the Redis part (lent by its callback or kept in q->recent). */
static void history_reply(req_t *q, const pl_history_page_t *older, const pl_history_page_t *recent,
                          int more)
{
    /* The stored events are JSON we built: splice them in as they are,
     * into one buffer sized up front, sent as one frame. */
    size_t room_len = strlen(q->room), cap = 96 + 6 * room_len;
    for (size_t i = 0; i < recent->n; i++)
        cap += recent->v[i].len + 1;
    for (size_t i = 0; older && i < older->n; i++)
        cap += older->v[i].len + 1;
    pl_buf_t b = {0};
    pl_buf_reserve(&b, cap);
    if (q->has_id)
        b.n += (size_t)snprintf(b.p, b.cap, "{\"id\":%" PRId64 ",\"ok\":true,\"room\":", q->id);
    else
        ADD_LIT(&b, "{\"ok\":true,\"room\":");
    (void)pl_history_json_string(&b, q->room, room_len); /* from a valid command: UTF-8 */
    ADD_LIT(&b, ",\"messages\":[");
    int first = 1;
    for (int part = 0; part < 2; part++) {
        const pl_history_page_t *pg = part == 0 ? older : recent;
        for (size_t i = 0; pg && i < pg->n; i++) {
            if (!first)
                b.p[b.n++] = ',';
            first = 0;
            memcpy(b.p + b.n, pg->v[i].json, pg->v[i].len);
            b.n += pg->v[i].len;
        }
    }
    /* complete: nothing older exists (seqs are gapless from 1, so "more"
     * is exact here) */
    if (more)
        ADD_LIT(&b, "],\"more\":true,\"complete\":false}");
    else
        ADD_LIT(&b, "],\"more\":false,\"complete\":true}");
    if (q->s->c)
        pl_conn_send_text(q->s->c, b.p, b.n);
    free(b.p);
}

/* The oldest seq a reply holds (0 when empty). */
static int64_t oldest_seq(const pl_history_page_t *older, const pl_history_page_t *recent)
{
    if (older && older->n > 0)
        return older->v[0].seq;
    return recent->n > 0 ? recent->v[0].seq : 0;
}

static void on_history_older(void *arg, int status, pl_history_page_t *page)
{
    req_t *q = arg;
    waiting--;
    if (status < 0) {
        chat_req_error(q, "unavailable", "archive unavailable");
        chat_req_free(q);
        return;
    }
    if (!pl_history_contiguous(page, &q->recent)) {
        /* never a page with a hole (see store/history.c for why this should not
         * happen: messages lost before they were archived, or a bug) */
        pl_log_error("history hole between mysql and redis, refused\troom=%s mysql_newest=%" PRId64
                     " redis_oldest=%" PRId64,
                     q->room, page->v[page->n - 1].seq, q->recent.v[0].seq);
        chat_req_error(q, "unavailable", "archive not contiguous with recent history");
        chat_req_free(q);
        return;
    }
    /* a full older part may have even older ones behind it; seqs start at 1 */
    history_reply(q, page, &q->recent, page->more && oldest_seq(page, &q->recent) > 1);
    chat_req_free(q);
}

static void on_history(void *arg, int status, pl_history_page_t *page)
{
    req_t *q = arg;
    if (status < 0) {
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
        return;
    }
    int64_t older_before;
    int older_limit;
    proto_t *p = q->s->p;
    if (pl_history_older_needed(page, q->before, q->limit, &older_before, &older_limit)) {
        if (waiting >= p->w->cfg->history_wait_max) {
            chat_limit(chat_l_history_wait);
            chat_req_error(q, "unavailable", "too many history requests waiting for the archive");
            chat_req_free(q);
            return;
        }
        /* keep the Redis part: the page only lives during this callback */
        waiting++;
        pl_history_page_keep(&q->recent, page);
        pl_history_older(p->db, q->room, older_before, older_limit, on_history_older, q);
        return;
    }
    /* a full Redis page: with MySQL, older ones exist below it unless it
     * reached seq 1; answered from the reply's own bytes, no copy kept */
    int more = page->more || (p->db && oldest_seq(NULL, page) > 1);
    history_reply(q, NULL, page, more);
    chat_req_free(q);
}

static void history_forms(proto_t *p, session_t *s, const pl_cmd_t *cmd);

void chat_cmd_history(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    if (cmd->room == NULL || cmd->sender || cmd->has_after || cmd->around || cmd->from_ts >= 0 ||
        cmd->until_ts >= 0) {
        history_forms(p, s, cmd);
        return;
    }
    if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
        chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
        return;
    }
    req_t *q = chat_req_new(s, cmd);
    q->limit = cmd->limit;
    q->before = cmd->before;
    if (pl_history_recent(p->bus, cmd->room, cmd->before, cmd->limit, on_history, q) < 0) {
        chat_req_error(q, "unavailable", "redis unavailable");
        chat_req_free(q);
    }
}

/* ===================================================================== */
/* the other forms (store/hquery.c)                                       */

typedef struct hform {
    req_t *q;
    pl_hq_t hq;
    int around;              /* 1: the older half is in first, the newer half runs */
    pl_history_page_t first; /* around: the older half, kept */
    int first_complete;
    int counted; /* holds one of history_wait_max's places */
} hform_t;

static void hform_free(hform_t *h)
{
    if (h->counted)
        waiting--;
    pl_history_page_free(&h->first);
    chat_req_free(h->q);
    free(h);
}

/* Appends the JSON of the page(s) and the flags, and sends. */
static void forms_reply(hform_t *h, const pl_hq_result_t *res)
{
    req_t *q = h->q;
    pl_buf_t b = {0};
    if (q->has_id)
        pl_buf_printf(&b, "{\"id\":%" PRId64 ",\"ok\":true,", q->id);
    else
        ADD_LIT(&b, "{\"ok\":true,");
    if (h->hq.room[0]) {
        ADD_LIT(&b, "\"room\":");
        (void)pl_history_json_string(&b, h->hq.room, strlen(h->hq.room));
    } else {
        ADD_LIT(&b, "\"sender\":");
        (void)pl_history_json_string(&b, h->hq.sender, strlen(h->hq.sender));
    }
    ADD_LIT(&b, ",\"messages\":[");
    int first = 1;
    for (int part = 0; part < 2; part++) {
        const pl_history_page_t *pg = part == 0 ? (h->around ? &h->first : NULL) : res->page;
        for (size_t i = 0; pg && i < pg->n; i++) {
            if (!first)
                pl_buf_add(&b, ",", 1);
            first = 0;
            pl_buf_add(&b, pg->v[i].json, pg->v[i].len);
        }
    }
    ADD_LIT(&b, "]");
    int complete = res->complete;
    if (h->around) {
        pl_buf_printf(&b, ",\"complete_older\":%s,\"complete_newer\":%s",
                      h->first_complete ? "true" : "false", res->complete ? "true" : "false");
        complete = complete && h->first_complete;
    }
    pl_buf_printf(&b, ",\"more\":%s,\"complete\":%s", complete ? "false" : "true",
                  complete ? "true" : "false");
    if (!h->hq.room[0] && !res->complete && res->next_room) {
        /* "<ts>.<seq>.<room>": the room last, it may hold '.' */
        char cur[64 + PL_ROOM_MAX];
        snprintf(cur, sizeof(cur), "%" PRId64 ".%" PRId64 ".%s", res->next_ts, res->next_seq,
                 res->next_room);
        ADD_LIT(&b, ",\"next\":");
        (void)pl_history_json_string(&b, cur, strlen(cur));
    }
    ADD_LIT(&b, "}");
    if (q->s->c)
        pl_conn_send_text(q->s->c, b.p, b.n);
    free(b.p);
}

static void on_form(void *arg, int status, const pl_hq_result_t *res)
{
    hform_t *h = arg;
    if (status < 0) {
        chat_req_error(h->q, "unavailable",
                       status == PL_HQ_EREDIS  ? "redis unavailable"
                       : status == PL_HQ_EHOLE ? "archive not contiguous with recent history"
                                               : "archive unavailable");
        hform_free(h);
        return;
    }
    if (h->around && h->hq.forward == 0) {
        /* the older half is in: keep it, then the newer half from around */
        pl_history_page_keep(&h->first, res->page);
        h->first_complete = res->complete;
        int64_t at = h->hq.before;
        h->hq.before = 0;
        h->hq.after = at - 1;
        h->hq.forward = 1;
        h->hq.limit = h->q->limit - h->hq.limit;
        int rc = pl_hq_run(h->q->s->p->bus, h->q->s->p->db, &h->hq, on_form, h);
        if (rc < 0) {
            chat_req_error(h->q, "unavailable", "redis unavailable");
            hform_free(h);
        }
        return;
    }
    forms_reply(h, res);
    hform_free(h);
}

/* "<ts>.<seq>.<room>" from a cross-room reply's next. */
static int parse_cursor(const char *c, pl_hq_t *hq)
{
    char *end;
    long long ts = strtoll(c, &end, 10);
    if (end == c || *end != '.' || ts < 0)
        return -1;
    const char *p = end + 1;
    long long seq = strtoll(p, &end, 10);
    if (end == p || *end != '.' || seq < 1)
        return -1;
    p = end + 1;
    if (!pl_room_name_valid(p))
        return -1;
    hq->has_cursor = 1;
    hq->cur_ts = ts;
    hq->cur_seq = seq;
    snprintf(hq->cur_room, sizeof(hq->cur_room), "%s", p);
    return 0;
}

static void history_forms(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
    pl_hq_t hq = {.from_ts = cmd->from_ts, .until_ts = cmd->until_ts, .limit = cmd->limit};
    if (cmd->room == NULL) {
        /* the cross-room form: only the user's own messages, so no room
         * check (rooms they could once read included) */
        if (strcmp(cmd->sender, s->auth.user) != 0) {
            chat_reply_error(s, cmd->has_id, cmd->id, "forbidden",
                             "the cross-room form is for your own messages");
            return;
        }
        if (cmd->cursor && parse_cursor(cmd->cursor, &hq) < 0) {
            chat_reply_error(s, cmd->has_id, cmd->id, "bad_request", "cursor is not valid");
            return;
        }
    } else {
        if (!pl_auth_room_allowed(&s->auth, cmd->room)) {
            chat_reply_error(s, cmd->has_id, cmd->id, "forbidden", "not allowed in this room");
            return;
        }
        snprintf(hq.room, sizeof(hq.room), "%s", cmd->room);
    }
    if (cmd->sender)
        snprintf(hq.sender, sizeof(hq.sender), "%s", cmd->sender);
    /* with MySQL a form may wait for it holding its Redis part: the whole
     * request counts against history_wait_max (simpler than counting
     * only its MySQL wait, and no looser) */
    if (p->db && waiting >= p->w->cfg->history_wait_max) {
        chat_limit(chat_l_history_wait);
        chat_reply_error(s, cmd->has_id, cmd->id, "unavailable",
                         "too many history requests waiting for the archive");
        return;
    }
    hform_t *h = pl_xcalloc(1, sizeof(*h));
    if (p->db) {
        waiting++;
        h->counted = 1;
    }
    h->q = chat_req_new(s, cmd);
    h->q->limit = cmd->limit;
    if (cmd->around) {
        /* the older half first (seq < around), then around and newer */
        h->around = 1;
        hq.before = cmd->around;
        hq.limit = cmd->limit / 2;
        if (hq.limit == 0) {
            /* limit 1: only the message at around */
            h->around = 0;
            hq.before = 0;
            hq.after = cmd->around - 1;
            hq.forward = 1;
            hq.limit = 1;
        }
    } else {
        hq.before = cmd->before;
        hq.after = cmd->has_after ? cmd->after : 0;
        hq.forward = cmd->has_after;
    }
    h->hq = hq;
    int rc = pl_hq_run(p->bus, p->db, &h->hq, on_form, h);
    if (rc < 0) {
        chat_req_error(h->q, "unavailable",
                       rc == -2 ? "the cross-room form needs the archive (mysql_url)"
                                : "redis unavailable");
        hform_free(h);
    }
}
