/*
 * Local room index (see room.h): rooms and users by name, members linked
 * both ways, per-room user counts for presence. Workers are
 * single-threaded, so nothing here locks.
 */
#include "room.h"
#include "util.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- message queues ---- */

void pl_mqueue_push(pl_mqueue_t *q, int64_t seq, uint64_t origin_conn, pl_frame_t *f)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 8;
        q->v = pl_xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->n].seq = seq;
    q->v[q->n].origin_conn = origin_conn;
    q->v[q->n].f = pl_frame_ref(f);
    q->n++;
    q->bytes += f->len;
}

int pl_mqueue_full(const pl_mqueue_t *q, size_t max_n, size_t max_bytes)
{
    return q->n >= max_n || q->bytes >= max_bytes;
}

void pl_mqueue_shift(pl_mqueue_t *q, size_t k)
{
    if (k > q->n)
        k = q->n;
    for (size_t i = 0; i < k; i++) {
        q->bytes -= q->v[i].f->len;
        pl_frame_unref(q->v[i].f);
    }
    memmove(q->v, q->v + k, (q->n - k) * sizeof(*q->v));
    q->n -= k;
}

void pl_mqueue_clear(pl_mqueue_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        pl_frame_unref(q->v[i].f);
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
    q->bytes = 0;
}

/* ---- rooms ---- */

void pl_rooms_init(pl_rooms_t *rs)
{
    pl_map_init(&rs->rooms);
    pl_map_init(&rs->users);
}

static void room_free(pl_room_t *r)
{
    assert(r->members == NULL);
    for (size_t i = 0; i < r->nusers; i++)
        free(r->users[i].user);
    free(r->users);
    pl_map_clear(&r->user_ix);
    pl_mqueue_clear(&r->pending);
    free(r->name);
    free(r);
}

void pl_rooms_free(pl_rooms_t *rs)
{
    size_t i;
    for (pl_map_entry_t *e = pl_map_first(&rs->rooms, &i); e; e = pl_map_next(&rs->rooms, e, &i))
        room_free(e->val);
    for (pl_map_entry_t *e = pl_map_first(&rs->users, &i); e; e = pl_map_next(&rs->users, e, &i)) {
        pl_user_conns_t *u = e->val;
        free(u->conns);
        free(u);
    }
    pl_map_clear(&rs->rooms);
    pl_map_clear(&rs->users);
}

pl_room_t *pl_room_get(pl_rooms_t *rs, const char *name)
{
    return pl_map_get(&rs->rooms, name);
}

static pl_room_user_t *room_user(const pl_room_t *r, const char *user)
{
    uintptr_t ix = (uintptr_t)pl_map_get(&r->user_ix, user);
    return ix ? &r->users[ix - 1] : NULL;
}

int pl_room_user_conns(const pl_room_t *r, const char *user)
{
    pl_room_user_t *u = room_user(r, user);
    return u ? u->conns : 0;
}

int pl_room_typing_allow(pl_room_t *r, const char *user, uint64_t now_ms, uint64_t interval_ms)
{
    pl_room_user_t *u = room_user(r, user);
    if (u == NULL)
        return 0;
    if (u->typing_ms != 0 && now_ms - u->typing_ms < interval_ms)
        return 0;
    u->typing_ms = now_ms ? now_ms : 1; /* 0 means never */
    return 1;
}

pl_member_t *pl_room_member(const pl_conn_rooms_t *cr, const char *name)
{
    return cr->by_name ? pl_map_get(cr->by_name, name) : NULL;
}

pl_member_t *pl_room_join(pl_rooms_t *rs, const char *name, void *conn, uint64_t conn_id,
                          const char *user, pl_conn_rooms_t *cr, int *first_conn, int *first_user)
{
    *first_conn = *first_user = 0;
    if (pl_room_member(cr, name))
        return NULL;
    pl_room_t *r = pl_map_get(&rs->rooms, name);
    if (r == NULL) {
        r = pl_xcalloc(1, sizeof(*r));
        r->name = pl_xstrdup(name);
        r->stream = ROOM_WAIT;
        pl_map_init(&r->user_ix);
        pl_map_put(&rs->rooms, name, r);
    }
    *first_conn = r->nmembers == 0;
    pl_member_t *m = pl_xcalloc(1, sizeof(*m));
    m->room = r;
    m->conn = conn;
    m->conn_id = conn_id;
    m->user = user;
    m->rnext = r->members;
    if (r->members)
        r->members->rprev = m;
    r->members = m;
    r->nmembers++;
    m->cnext = cr->head;
    if (cr->head)
        cr->head->cprev = m;
    cr->head = m;
    if (cr->by_name == NULL) {
        cr->by_name = pl_xmalloc(sizeof(*cr->by_name));
        pl_map_init(cr->by_name);
    }
    pl_map_put(cr->by_name, name, m);
    cr->n++;

    pl_room_user_t *u = room_user(r, user);
    if (u == NULL) {
        if (r->nusers == r->capusers) {
            r->capusers = r->capusers ? r->capusers * 2 : 4;
            r->users = pl_xrealloc(r->users, r->capusers * sizeof(*r->users));
        }
        u = &r->users[r->nusers++];
        u->user = pl_xstrdup(user);
        u->conns = 0;
        u->typing_ms = 0;
        pl_map_put(&r->user_ix, user, (void *)(uintptr_t)r->nusers);
    }
    *first_user = u->conns == 0;
    u->conns++;
    return m;
}

void pl_room_leave(pl_member_t *m, pl_conn_rooms_t *cr, int *last_user, int *empty)
{
    pl_room_t *r = m->room;
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        r->members = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    r->nmembers--;
    if (m->cprev)
        m->cprev->cnext = m->cnext;
    else
        cr->head = m->cnext;
    if (m->cnext)
        m->cnext->cprev = m->cprev;
    pl_map_del(cr->by_name, r->name);
    if (--cr->n == 0) {
        pl_map_clear(cr->by_name);
        free(cr->by_name);
        cr->by_name = NULL;
    }

    *last_user = 0;
    pl_room_user_t *u = room_user(r, m->user);
    assert(u != NULL);
    if (--u->conns == 0) {
        *last_user = 1;
        pl_map_del(&r->user_ix, u->user);
        free(u->user);
        *u = r->users[--r->nusers];
        if (u != &r->users[r->nusers]) /* the last entry moved into the hole */
            pl_map_put(&r->user_ix, u->user, (void *)(uintptr_t)(u - r->users + 1));
    }
    *empty = r->nmembers == 0;
    pl_mqueue_clear(&m->q);
    free(m);
}

void pl_room_drop(pl_rooms_t *rs, pl_room_t *r)
{
    assert(r->nmembers == 0);
    pl_map_del(&rs->rooms, r->name);
    room_free(r);
}

/* ---- users ---- */

int pl_user_add(pl_rooms_t *rs, const char *user, void *conn)
{
    pl_user_conns_t *u = pl_map_get(&rs->users, user);
    if (u == NULL) {
        u = pl_xcalloc(1, sizeof(*u));
        pl_map_put(&rs->users, user, u);
    }
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 4;
        u->conns = pl_xrealloc(u->conns, u->cap * sizeof(*u->conns));
    }
    u->conns[u->n++] = conn;
    return u->n == 1;
}

int pl_user_del(pl_rooms_t *rs, const char *user, void *conn)
{
    pl_user_conns_t *u = pl_map_get(&rs->users, user);
    if (u == NULL)
        return 0;
    for (size_t i = 0; i < u->n; i++)
        if (u->conns[i] == conn) {
            u->conns[i] = u->conns[--u->n];
            break;
        }
    if (u->n > 0)
        return 0;
    pl_map_del(&rs->users, user);
    free(u->conns);
    free(u);
    return 1;
}

pl_user_conns_t *pl_user_get(pl_rooms_t *rs, const char *user)
{
    return pl_map_get(&rs->users, user);
}
