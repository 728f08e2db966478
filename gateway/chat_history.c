/*
 * Chat history (docs/protocol.md 1.5, 3.4): the Redis part, then the
 * MySQL part below it when needed, joined without a hole.
 */
#include "auth.h"
#include "conn.h"
#include "chat.h"
#include "history.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* history / presence / typing                                            */

static void history_reply(req_t *q, pl_history_page_t *older, int more)
{
    /* The stored events are JSON we built: splice them in as they are. */
    size_t cap = 256, n = 0;
    for (size_t i = 0; i < q->recent.n; i++)
        cap += q->recent.v[i].len + 1;
    for (size_t i = 0; older && i < older->n; i++)
        cap += older->v[i].len + 1;
    char *rj = chat_json_literal(q->room, strlen(q->room));
    cap += strlen(rj);
    char *buf = pl_xmalloc(cap);
    if (q->has_id)
        n += (size_t)snprintf(buf + n, cap - n, "{\"id\":%" PRId64 ",\"ok\":true,", q->id);
    else
        n += (size_t)snprintf(buf + n, cap - n, "{\"ok\":true,");
    n += (size_t)snprintf(buf + n, cap - n, "\"room\":%s,\"messages\":[", rj);
    int first = 1;
    for (int part = 0; part < 2; part++) {
        pl_history_page_t *pg = part == 0 ? older : &q->recent;
        for (size_t i = 0; pg && i < pg->n; i++) {
            if (!first)
                buf[n++] = ',';
            first = 0;
            memcpy(buf + n, pg->v[i].json, pg->v[i].len);
            n += pg->v[i].len;
        }
    }
    n += (size_t)snprintf(buf + n, cap - n, "],\"more\":%s}", more ? "true" : "false");
    if (q->s->c)
        pl_conn_send_text(q->s->c, buf, n);
    free(buf);
    free(rj);
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
    if (status < 0) {
        chat_req_error(q, "unavailable", "archive unavailable");
        chat_req_free(q);
        return;
    }
    if (!pl_history_contiguous(page, &q->recent)) {
        /* never a page with a hole (see history.c for why this should not
         * happen: messages lost before they were archived, or a bug) */
        pl_log_error("history hole between mysql and redis, refused\troom=%s mysql_newest=%" PRId64
                     " redis_oldest=%" PRId64,
                     q->room, page->v[page->n - 1].seq, q->recent.v[0].seq);
        chat_req_error(q, "unavailable", "archive not contiguous with recent history");
        chat_req_free(q);
        return;
    }
    /* a full older part may have even older ones behind it; seqs start at 1 */
    history_reply(q, page, page->more && oldest_seq(page, &q->recent) > 1);
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
    /* keep the Redis part: the page is freed after this callback */
    q->recent = *page;
    memset(page, 0, sizeof(*page));
    int64_t older_before;
    int older_limit;
    proto_t *p = q->s->p;
    if (pl_history_older_needed(&q->recent, q->before, q->limit, &older_before, &older_limit)) {
        pl_history_older(p->db, q->room, older_before, older_limit, on_history_older, q);
        return;
    }
    /* a full Redis page: with MySQL, older ones exist below it unless it
     * reached seq 1 */
    int more = q->recent.more || (p->db && oldest_seq(NULL, &q->recent) > 1);
    history_reply(q, NULL, more);
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
