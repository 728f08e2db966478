/*
 * Consumer-group reading, acknowledging and trimming of the archive stream
 * over blocking hiredis connections (see reader.h).
 */
#include "reader.h"
#include "log.h"
#include "streamid.h"
#include "util.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* ---- batches --------------------------------------------------------- */

void pl_arch_batch_clear(pl_arch_batch_t *b)
{
    if (b->reply)
        freeReplyObject(b->reply);
    b->reply = NULL;
    b->n = 0;
}

static pl_arch_bytes_t rbytes(const redisReply *r)
{
    return (pl_arch_bytes_t){r->str, (size_t)r->len};
}

/* Appends the entries of an array [[id, [f, v, ...] | nil], ...] to b. */
static int add_entries(pl_arch_batch_t *b, const redisReply *arr)
{
    if (arr->type != REDIS_REPLY_ARRAY)
        return -1;
    size_t nf = 0;
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
            e->element[1]->type == REDIS_REPLY_ARRAY)
            nf += e->element[1]->elements;
    }
    if (b->n + arr->elements > b->cap) {
        b->cap = b->n + arr->elements;
        b->entries = pl_xrealloc(b->entries, b->cap * sizeof(*b->entries));
    }
    /* One field array per reply; add_entries is called once per batch. */
    if (nf > b->nfieldbuf) {
        free(b->fieldbuf);
        b->fieldbuf = pl_xmalloc(nf * sizeof(*b->fieldbuf));
        b->nfieldbuf = nf;
    }
    size_t used = 0;
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        if (e->type == REDIS_REPLY_NIL)
            continue; /* Redis 6.2 XAUTOCLAIM: an entry deleted meanwhile */
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            return -1;
        pl_arch_entry_t *en = &b->entries[b->n++];
        en->id = rbytes(e->element[0]);
        en->fields = NULL;
        en->nfields = 0;
        const redisReply *f = e->element[1];
        if (f->type == REDIS_REPLY_ARRAY) {
            en->fields = b->fieldbuf + used;
            for (size_t k = 0; k < f->elements; k++) {
                const redisReply *x = f->element[k];
                if (x->type == REDIS_REPLY_STRING)
                    b->fieldbuf[used + k] = rbytes(x);
                else
                    b->fieldbuf[used + k] = (pl_arch_bytes_t){"", 0};
            }
            en->nfields = f->elements;
            used += f->elements;
        }
    }
    return 0;
}

/* ---- connections ------------------------------------------------------ */

struct pl_reader {
    const pl_redis_url_t *url;
    const char *stream, *group, *consumer;
    char dead_stream[512];
    int64_t block_ms;
    redisContext *rd;  /* reads only */
    redisContext *ctl; /* acks, trims, stats */
    int outstanding;   /* a read was sent on rd and its reply not yet taken */
    char err[512];
};

pl_reader_t *pl_reader_new(const pl_redis_url_t *url, const char *stream, const char *group,
                           const char *consumer, int64_t block_ms)
{
    pl_reader_t *r = pl_xcalloc(1, sizeof(*r));
    r->url = url;
    r->stream = stream;
    r->group = group;
    r->consumer = consumer;
    r->block_ms = block_ms;
    snprintf(r->dead_stream, sizeof(r->dead_stream), "%s:dead", stream);
    return r;
}

void pl_reader_disconnect(pl_reader_t *r)
{
    if (r->rd)
        redisFree(r->rd);
    if (r->ctl)
        redisFree(r->ctl);
    r->rd = r->ctl = NULL;
    r->outstanding = 0;
}

void pl_reader_free(pl_reader_t *r)
{
    if (r == NULL)
        return;
    pl_reader_disconnect(r);
    free(r);
}

const char *pl_reader_error(const pl_reader_t *r)
{
    return r->err;
}

int pl_reader_connected(const pl_reader_t *r)
{
    return r->rd != NULL;
}

int pl_reader_outstanding(const pl_reader_t *r)
{
    return r->outstanding;
}

/* Records an error (from the context or a reply), disconnects, returns -1. */
static int fail(pl_reader_t *r, redisContext *c, const redisReply *reply, const char *what)
{
    if (reply && reply->type == REDIS_REPLY_ERROR)
        snprintf(r->err, sizeof(r->err), "%s: %s", what, reply->str);
    else if (c && c->err)
        snprintf(r->err, sizeof(r->err), "%s: %s", what, c->errstr);
    else
        snprintf(r->err, sizeof(r->err), "%s: unexpected reply", what);
    pl_reader_disconnect(r);
    return -1;
}

static redisContext *open_one(pl_reader_t *r, int64_t timeout_ms)
{
    struct timeval tv = {2, 0};
    redisContext *c = r->url->socket ? redisConnectUnixWithTimeout(r->url->socket, tv)
                                     : redisConnectWithTimeout(r->url->host, r->url->port, tv);
    if (c == NULL) {
        snprintf(r->err, sizeof(r->err), "connect: out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(r->err, sizeof(r->err), "connect: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    struct timeval to = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisSetTimeout(c, to);
    redisReply *rep;
    const char *argv[3];
    size_t lens[3];
    int argc = pl_redis_url_auth(r->url, argv, lens);
    if (argc > 0) {
        rep = redisCommandArgv(c, argc, argv, lens);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(r->err, sizeof(r->err), "AUTH: %s", rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    if (r->url->db) {
        rep = redisCommand(c, "SELECT %d", r->url->db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(r->err, sizeof(r->err), "SELECT: %s", rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    return c;
}

int pl_reader_connect(pl_reader_t *r)
{
    pl_reader_disconnect(r);
    /* The read connection waits up to block_ms inside Redis; allow that
     * plus slack before calling the server dead. */
    r->rd = open_one(r, r->block_ms + 10000);
    if (r->rd == NULL)
        return -1;
    r->ctl = open_one(r, 10000);
    if (r->ctl == NULL) {
        pl_reader_disconnect(r);
        return -1;
    }
    redisReply *rep = redisCommand(r->ctl, "XGROUP CREATE %s %s 0 MKSTREAM", r->stream, r->group);
    if (rep == NULL)
        return fail(r, r->ctl, NULL, "XGROUP CREATE");
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0) {
        int rc = fail(r, r->ctl, rep, "XGROUP CREATE");
        freeReplyObject(rep);
        return rc;
    }
    if (rep->type != REDIS_REPLY_ERROR)
        pl_log_info("created consumer group\tstream=%s group=%s", r->stream, r->group);
    freeReplyObject(rep);
    return 0;
}

int pl_reader_send_read(pl_reader_t *r, const char *from, int64_t count, int64_t block_ms)
{
    if (r->outstanding || r->rd == NULL) {
        snprintf(r->err, sizeof(r->err), "read: not connected or a read is outstanding");
        return -1;
    }
    char countbuf[24], blockbuf[24];
    snprintf(countbuf, sizeof(countbuf), "%lld", (long long)count);
    snprintf(blockbuf, sizeof(blockbuf), "%lld", (long long)block_ms);
    const char *argv[11];
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = r->group;
    argv[argc++] = r->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (strcmp(from, ">") == 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = r->stream;
    argv[argc++] = from;
    if (redisAppendCommandArgv(r->rd, argc, argv, NULL) != REDIS_OK)
        return fail(r, r->rd, NULL, "XREADGROUP");
    /* Push it out now so Redis works on it while we write to MySQL. */
    int done = 0;
    while (!done)
        if (redisBufferWrite(r->rd, &done) != REDIS_OK)
            return fail(r, r->rd, NULL, "XREADGROUP");
    r->outstanding = 1;
    return 0;
}

int pl_reader_recv(pl_reader_t *r, pl_arch_batch_t *b)
{
    pl_arch_batch_clear(b);
    if (!r->outstanding) {
        snprintf(r->err, sizeof(r->err), "recv: no read outstanding");
        return -1;
    }
    redisReply *rep = NULL;
    r->outstanding = 0;
    if (redisGetReply(r->rd, (void **)&rep) != REDIS_OK || rep == NULL)
        return fail(r, r->rd, NULL, "XREADGROUP");
    if (rep->type == REDIS_REPLY_NIL) { /* BLOCK timed out */
        freeReplyObject(rep);
        return 0;
    }
    b->reply = rep;
    /* [[stream, [entries]]] */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements != 2 ||
        add_entries(b, rep->element[0]->element[1]) < 0) {
        fail(r, r->rd, rep, "XREADGROUP");
        pl_arch_batch_clear(b);
        return -1;
    }
    return 0;
}

int pl_reader_autoclaim(pl_reader_t *r, int64_t min_idle, char *cursor, size_t cursor_len,
                        int64_t count, pl_arch_batch_t *b)
{
    pl_arch_batch_clear(b);
    if (r->rd == NULL || r->outstanding) {
        snprintf(r->err, sizeof(r->err), "XAUTOCLAIM: not connected or a read is outstanding");
        return -1;
    }
    redisReply *rep =
        redisCommand(r->rd, "XAUTOCLAIM %s %s %s %lld %s COUNT %lld", r->stream, r->group,
                     r->consumer, (long long)min_idle, cursor, (long long)count);
    if (rep == NULL)
        return fail(r, r->rd, NULL, "XAUTOCLAIM");
    b->reply = rep;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || add_entries(b, rep->element[1]) < 0) {
        fail(r, r->rd, rep, "XAUTOCLAIM");
        pl_arch_batch_clear(b);
        return -1;
    }
    snprintf(cursor, cursor_len, "%s", rep->element[0]->str);
    /* Redis 7: IDs that were pending but deleted; drop them from the
     * batch as field-less entries so they get acked (harmless if gone). */
    if (rep->elements >= 3 && rep->element[2]->type == REDIS_REPLY_ARRAY) {
        const redisReply *del = rep->element[2];
        if (b->n + del->elements > b->cap) {
            b->cap = b->n + del->elements;
            b->entries = pl_xrealloc(b->entries, b->cap * sizeof(*b->entries));
        }
        for (size_t i = 0; i < del->elements; i++) {
            if (del->element[i]->type != REDIS_REPLY_STRING)
                continue;
            pl_arch_entry_t *en = &b->entries[b->n++];
            en->id = rbytes(del->element[i]);
            en->fields = NULL;
            en->nfields = 0;
        }
    }
    return 0;
}

int pl_reader_ack(pl_reader_t *r, const pl_arch_bytes_t *ids, size_t n, const pl_arch_dead_t *dead,
                  size_t ndead)
{
    if (r->ctl == NULL) {
        snprintf(r->err, sizeof(r->err), "ack: not connected");
        return -1;
    }
    size_t pipelined = 0;
    for (size_t i = 0; i < ndead; i++) {
        const pl_arch_entry_t *e = dead[i].entry;
        /* XADD dead MAXLEN ~ 100000 * reason R src_id ID <original fields>;
         * an odd field count would make XADD fail, so pad with "". */
        size_t argc = 10 + e->nfields + 1;
        const char **argv = pl_xmalloc(argc * sizeof(*argv));
        size_t *lens = pl_xmalloc(argc * sizeof(*lens));
        size_t k = 0;
#define ARG(s, l) (argv[k] = (s), lens[k] = (l), k++)
        ARG("XADD", 4);
        ARG(r->dead_stream, strlen(r->dead_stream));
        ARG("MAXLEN", 6);
        ARG("~", 1);
        ARG("100000", 6);
        ARG("*", 1);
        ARG("reason", 6);
        ARG(dead[i].reason, strlen(dead[i].reason));
        ARG("src_id", 6);
        ARG(e->id.p, e->id.n);
        for (size_t f = 0; f < e->nfields; f++)
            ARG(e->fields[f].p, e->fields[f].n);
        if (e->nfields % 2)
            ARG("", 0);
#undef ARG
        int rc = redisAppendCommandArgv(r->ctl, (int)k, argv, lens);
        free(argv);
        free(lens);
        if (rc != REDIS_OK)
            return fail(r, r->ctl, NULL, "XADD dead letter");
        pipelined++;
    }
    if (n > 0) {
        size_t argc = 3 + n;
        const char **argv = pl_xmalloc(argc * sizeof(*argv));
        size_t *lens = pl_xmalloc(argc * sizeof(*lens));
        argv[0] = "XACK";
        lens[0] = 4;
        argv[1] = r->stream;
        lens[1] = strlen(r->stream);
        argv[2] = r->group;
        lens[2] = strlen(r->group);
        for (size_t i = 0; i < n; i++) {
            argv[3 + i] = ids[i].p;
            lens[3 + i] = ids[i].n;
        }
        int rc = redisAppendCommandArgv(r->ctl, (int)argc, argv, lens);
        free(argv);
        free(lens);
        if (rc != REDIS_OK)
            return fail(r, r->ctl, NULL, "XACK");
        pipelined++;
    }
    for (size_t i = 0; i < pipelined; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->ctl, (void **)&rep) != REDIS_OK || rep == NULL)
            return fail(r, r->ctl, NULL, "XACK");
        if (rep->type == REDIS_REPLY_ERROR) {
            int rc =
                fail(r, r->ctl, rep, i + 1 == pipelined && n > 0 ? "XACK" : "XADD dead letter");
            freeReplyObject(rep);
            return rc;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* ---- the archived marker (docs/protocol.md 3.4; the EVAL is marks.c's) */

int pl_reader_mark_archived(pl_reader_t *r, const pl_arch_mark_t *marks, size_t n)
{
    if (n == 0)
        return 0;
    if (r->ctl == NULL) {
        snprintf(r->err, sizeof(r->err), "mark: not connected");
        return -1;
    }
    size_t pipelined = 0;
    for (size_t i = 0; i < n;) {
        pl_arch_mark_cmd_t cmd;
        size_t k = pl_arch_mark_cmd(&cmd, marks + i, n - i);
        int rc = redisAppendCommandArgv(r->ctl, (int)cmd.argc, cmd.argv, cmd.lens);
        pl_arch_mark_cmd_free(&cmd);
        if (rc != REDIS_OK)
            return fail(r, r->ctl, NULL, "archived marker");
        pipelined++;
        i += k;
    }
    for (size_t i = 0; i < pipelined; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->ctl, (void **)&rep) != REDIS_OK || rep == NULL)
            return fail(r, r->ctl, NULL, "archived marker");
        /* A script error must not stall archiving: the marker then stays
         * behind, which only makes gateways keep more in Redis. */
        if (rep->type == REDIS_REPLY_ERROR)
            pl_log_error("archived marker not raised\terror=\"%s\"", rep->str);
        freeReplyObject(rep);
    }
    return 0;
}

/* Looks up key in a flat [k, v, k, v...] array reply. */
static const redisReply *kv(const redisReply *arr, const char *key)
{
    for (size_t i = 0; i + 1 < arr->elements; i += 2)
        if (arr->element[i]->type == REDIS_REPLY_STRING && strcmp(arr->element[i]->str, key) == 0)
            return arr->element[i + 1];
    return NULL;
}

static int64_t kv_int(const redisReply *arr, const char *key, int64_t def)
{
    const redisReply *v = kv(arr, key);
    if (v == NULL)
        return def;
    if (v->type == REDIS_REPLY_INTEGER)
        return v->integer;
    if (v->type == REDIS_REPLY_STRING)
        return strtoll(v->str, NULL, 10);
    return def;
}

/* XINFO GROUPS and XLEN, pipelined; fills st from our group. When minid is
 * not NULL, also computes the smallest ID any group still needs. */
static int group_info(pl_reader_t *r, pl_arch_group_stats_t *st, pl_arch_stream_id_t *minid,
                      int *have_min)
{
    st->pending = st->lag = st->length = 0;
    if (r->ctl == NULL) {
        snprintf(r->err, sizeof(r->err), "stats: not connected");
        return -1;
    }
    redisAppendCommand(r->ctl, "XINFO GROUPS %s", r->stream);
    redisAppendCommand(r->ctl, "XLEN %s", r->stream);
    redisReply *groups = NULL, *len = NULL;
    if (redisGetReply(r->ctl, (void **)&groups) != REDIS_OK || groups == NULL)
        return fail(r, r->ctl, NULL, "XINFO GROUPS");
    if (redisGetReply(r->ctl, (void **)&len) != REDIS_OK || len == NULL) {
        freeReplyObject(groups);
        return fail(r, r->ctl, NULL, "XLEN");
    }
    int rc = 0;
    if (groups->type != REDIS_REPLY_ARRAY || len->type != REDIS_REPLY_INTEGER) {
        rc = fail(r, r->ctl, groups->type == REDIS_REPLY_ERROR ? groups : len, "XINFO GROUPS");
        goto out;
    }
    st->length = len->integer;
    if (have_min)
        *have_min = 0;
    for (size_t i = 0; i < groups->elements; i++) {
        const redisReply *g = groups->element[i];
        if (g->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *name = kv(g, "name");
        const redisReply *last = kv(g, "last-delivered-id");
        int64_t pending = kv_int(g, "pending", 0);
        if (name && name->type == REDIS_REPLY_STRING && strcmp(name->str, r->group) == 0) {
            st->pending = pending;
            const redisReply *lag = kv(g, "lag");
            st->lag = (lag && lag->type == REDIS_REPLY_INTEGER) ? lag->integer : -1;
        }
        if (minid == NULL)
            continue;
        if (name == NULL || name->type != REDIS_REPLY_STRING || last == NULL ||
            last->type != REDIS_REPLY_STRING) {
            /* A group we cannot read may still need every entry: trim nothing. */
            *have_min = 0;
            goto out;
        }
        pl_arch_stream_id_t need;
        if (pl_arch_stream_id_parse(last->str, (size_t)last->len, &need) < 0) {
            rc = fail(r, r->ctl, NULL, "XINFO GROUPS last-delivered-id");
            goto out;
        }
        need = pl_arch_stream_id_next(need);
        if (pending > 0) {
            /* The oldest pending entry of this group must stay. */
            redisReply *p =
                redisCommand(r->ctl, "XPENDING %s %b", r->stream, name->str, (size_t)name->len);
            if (p == NULL) {
                rc = fail(r, r->ctl, NULL, "XPENDING");
                goto out;
            }
            if (p->type == REDIS_REPLY_ARRAY && p->elements >= 2 &&
                p->element[1]->type == REDIS_REPLY_STRING) {
                pl_arch_stream_id_t oldest;
                if (pl_arch_stream_id_parse(p->element[1]->str, (size_t)p->element[1]->len,
                                            &oldest) == 0 &&
                    pl_arch_stream_id_cmp(oldest, need) < 0)
                    need = oldest;
            } else if (p->type == REDIS_REPLY_ERROR) {
                rc = fail(r, r->ctl, p, "XPENDING");
                freeReplyObject(p);
                goto out;
            }
            freeReplyObject(p);
        }
        if (!*have_min || pl_arch_stream_id_cmp(need, *minid) < 0) {
            *minid = need;
            *have_min = 1;
        }
    }
out:
    freeReplyObject(groups);
    freeReplyObject(len);
    return rc;
}

int pl_reader_stats(pl_reader_t *r, pl_arch_group_stats_t *st)
{
    return group_info(r, st, NULL, NULL);
}

long long pl_reader_trim(pl_reader_t *r, pl_arch_group_stats_t *st)
{
    pl_arch_stream_id_t minid = {0, 0};
    int have_min = 0;
    if (group_info(r, st, &minid, &have_min) < 0)
        return -1;
    if (!have_min || (minid.ms == 0 && minid.seq <= 1))
        return 0;
    char idbuf[48];
    pl_arch_stream_id_format(minid, idbuf, sizeof(idbuf));
    redisReply *rep = redisCommand(r->ctl, "XTRIM %s MINID %s", r->stream, idbuf);
    if (rep == NULL)
        return fail(r, r->ctl, NULL, "XTRIM");
    if (rep->type != REDIS_REPLY_INTEGER) {
        int rc = fail(r, r->ctl, rep, "XTRIM");
        freeReplyObject(rep);
        return rc;
    }
    long long trimmed = rep->integer;
    freeReplyObject(rep);
    st->length -= trimmed;
    if (trimmed > 0)
        pl_log_debug("trimmed stream\tstream=%s minid=%s trimmed=%lld", r->stream, idbuf, trimmed);
    return trimmed;
}

int pl_reader_forget_consumer(pl_reader_t *r)
{
    if (r->ctl == NULL)
        return -1;
    redisReply *rep =
        redisCommand(r->ctl, "XPENDING %s %s - + 1 %s", r->stream, r->group, r->consumer);
    if (rep == NULL)
        return fail(r, r->ctl, NULL, "XPENDING");
    int held = rep->type != REDIS_REPLY_ARRAY || rep->elements > 0;
    freeReplyObject(rep);
    if (held)
        return 0;
    rep = redisCommand(r->ctl, "XGROUP DELCONSUMER %s %s %s", r->stream, r->group, r->consumer);
    if (rep == NULL)
        return fail(r, r->ctl, NULL, "XGROUP DELCONSUMER");
    int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
    freeReplyObject(rep);
    return ok ? 1 : 0;
}
