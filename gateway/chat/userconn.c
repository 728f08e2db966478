/*
 * max_user_connections: how many connections a user holds in the whole
 * cluster, counted in Redis so every node sees the same number. Each
 * authenticated connection is an entry "<origin>|<conn id>" in the user's
 * zset (pl_key_user_conns), scored by its expiry: auth adds it (refused
 * past the limit), the housekeeping tick extends this worker's entries,
 * close removes it. A node that dies without removing its entries loses
 * them after UCONN_TTL_MS, so a user is never locked out for long.
 *
 * The check is made while the auth reply is held anyway (for the user
 * channel, cmd.c): commands the client pipelined behind auth run
 * meanwhile, the shared rate limit bounding what an extra connection can
 * do in that round trip. Redis down or slow (no answer within the auth
 * hold of 2 s) lets the connection in: refusing every login while Redis
 * is away would be worse, and the next refresh counts it.
 */
#include "chat.h"
#include "keys.h"
#include "log.h"
#include "script.h"
#include "util.h"
#include "ws.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UCONN_MEMBER_MAX (160 + 24) /* "<origin>|<conn id>" */
#define UCONN_BATCH 64              /* members per refresh call */

static void member_of(proto_t *p, uint64_t conn_id, char *out, size_t n)
{
    snprintf(out, n, "%s|%" PRIu64, p->origin, conn_id);
}

static int uconn_call(proto_t *p, const char *user, const char *op, int nmembers,
                      const char **members, pl_bus_reply_fn fn, void *arg)
{
    char key[PL_KEY_MAX], ttl[16], max[24];
    pl_key_user_conns(key, user);
    snprintf(ttl, sizeof(ttl), "%d", UCONN_TTL_MS);
    snprintf(max, sizeof(max), "%" PRId64, p->w->cfg->max_user_connections);
    const char *args[UCONN_NARGS + UCONN_BATCH];
    args[UCONN_OP] = op;
    args[UCONN_TTL] = ttl;
    args[UCONN_MAX] = max;
    for (int i = 0; i < nmembers && i < UCONN_BATCH; i++)
        args[UCONN_NARGS + i] = members[i];
    const char *keys[] = {key};
    int n = nmembers < UCONN_BATCH ? nmembers : UCONN_BATCH;
    return pl_script_call(p->bus, PL_SCRIPT_USERCONN, 1, keys, UCONN_NARGS + n, args, NULL, fn,
                          arg);
}

static void on_ignore(void *arg, redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_warn("userconn script failed\terror=\"%s\"", r->str);
    }
}

static void on_added(void *arg, redisReply *r)
{
    req_t *q = arg;
    session_t *s = q->s;
    int refused = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    if (r && r->type == REDIS_REPLY_ERROR) {
        chat_count(chat_m_redis_errors, 1);
        pl_log_warn("userconn script failed\terror=\"%s\"", r->str);
    }
    if (s->c == NULL) {
        chat_req_free(q);
        return; /* closed meanwhile; its del went out behind this add */
    }
    if (refused) {
        char detail[64];
        snprintf(detail, sizeof(detail), " max=%" PRId64, s->p->w->cfg->max_user_connections);
        chat_limit_hit(s, CHAT_LIMIT_USER_CONNECTIONS, detail);
        s->uconn_wait = 0;
        chat_reply_error(s, s->auth_has_id, s->auth_id, "too_many_connections",
                         "too many connections for this user");
        pl_conn_close(s->c, PL_WS_CLOSE_POLICY, "too many connections for this user");
        chat_req_free(q);
        return;
    }
    if (s->uconn_wait) {
        s->uconn_wait = 0;
        if (!s->auth_wait)
            chat_auth_reply(s);
    }
    chat_req_free(q);
}

void chat_uconn_add(proto_t *p, session_t *s)
{
    if (p->w->cfg->max_user_connections <= 0)
        return;
    char member[UCONN_MEMBER_MAX];
    member_of(p, s->c->id, member, sizeof(member));
    const char *members[] = {member};
    pl_cmd_t none = {.op = OP_AUTH};
    req_t *q = chat_req_new(s, &none);
    if (uconn_call(p, s->auth.user, "add", 1, members, on_added, q) < 0) {
        chat_req_free(q); /* Redis down: let it in, the refresh counts it */
        return;
    }
    s->uconn_wait = 1;
}

void chat_uconn_del(proto_t *p, session_t *s)
{
    if (p->w->cfg->max_user_connections <= 0 || s->c == NULL)
        return;
    char member[UCONN_MEMBER_MAX];
    member_of(p, s->c->id, member, sizeof(member));
    const char *members[] = {member};
    (void)uconn_call(p, s->auth.user, "del", 1, members, on_ignore, NULL);
}

void chat_uconn_refresh(proto_t *p)
{
    if (p->w->cfg->max_user_connections <= 0 || !pl_bus_ready(p->bus))
        return;
    char(*members)[UCONN_MEMBER_MAX] = pl_xmalloc(UCONN_BATCH * sizeof(*members));
    const char *args[UCONN_BATCH];
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&p->rooms.users, &i); e;
         e = pl_map_next(&p->rooms.users, e, &i)) {
        const pl_user_conns_t *u = e->val;
        for (size_t k = 0; k < u->n; k += UCONN_BATCH) {
            size_t n = u->n - k < UCONN_BATCH ? u->n - k : UCONN_BATCH;
            int m = 0;
            for (size_t j = 0; j < n; j++) {
                const pl_conn_t *c = u->conns[k + j];
                const session_t *s = c->session;
                if (s && s->uconn_wait)
                    continue; /* its add is still out (and may be refused) */
                member_of(p, c->id, members[m], sizeof(members[m]));
                args[m] = members[m];
                m++;
            }
            if (m > 0)
                (void)uconn_call(p, e->key, "refresh", m, args, on_ignore, NULL);
        }
    }
    free(members);
}
