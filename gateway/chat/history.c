/*
 * Chat history (docs/protocol.md 1.5, 3.4): the history command. The
 * Redis part, then the MySQL part below it when needed (both read by
 * store/history.c), joined without a hole.
 */
#include "auth.h"
#include "conn.h"
#include "chat.h"
#include "history.h"
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
    if (more)
        ADD_LIT(&b, "],\"more\":true}");
    else
        ADD_LIT(&b, "],\"more\":false}");
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

void chat_cmd_history(proto_t *p, session_t *s, const pl_cmd_t *cmd)
{
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
