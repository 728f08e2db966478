/*
 * The worker's asynchronous MySQL/MariaDB pool (see db.h).
 *
 * Each connection is a small state machine over MariaDB Connector/C's
 * non-blocking calls: a FOO_start() or FOO_cont() either finishes or returns
 * the MYSQL_WAIT_* events it needs; we wait for those with one event on the
 * connection's socket and one timer, then call FOO_cont() with what
 * happened. Nothing here ever waits on the socket itself.
 *
 * Requests wait on one FIFO queue until a connection is idle. Each carries a
 * deadline timer from submission, so a request ends on time whatever the
 * database does. A connect failure starts a backoff during which new
 * requests fail at once (a down database must not pile up callers), and
 * fails the queue when no other connection is alive. Connections open
 * lazily, when the queue needs them.
 *
 * Re-entrancy: user callbacks run from deliver() only. Submitting never
 * runs anything (it kicks a deferred event), so a callback is never called
 * from inside a request function, and a callback may submit or cancel.
 */
#include "db.h"
#include "buf.h"
#include "log.h"
#include "mysql_url.h"
#include "util.h"

#include <errmsg.h>
#include <mysql.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

/* First and largest pause after a failed connect before the next attempt. */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 4000
/* FOO_cont(MYSQL_WAIT_TIMEOUT) calls spent unwinding an operation we give up
 * on; the library ends an I/O wait on the first one. */
#define ABORT_TRIES 8

enum req_kind {
    REQ_MAX_SEQ, /* key is the room */
    REQ_HISTORY, /* key is the room; before_seq, limit */
    REQ_EXEC,    /* key is the SQL */
    REQ_SELECT,  /* key is a history SELECT built by store/hquery.c; rows as REQ_HISTORY */
};

enum req_state {
    REQ_QUEUED,  /* on db->queue waiting for an idle connection; deadline armed */
    REQ_RUNNING, /* conn->req of a connection in LINK_QUERY or LINK_STORE; deadline armed */
    REQ_FAILED,  /* on db->failed, its error delivered by on_kick; deadline off */
    REQ_CALLING, /* on no list; its callback is running, freed after it returns */
};

struct link;

struct pl_db_req {
    TAILQ_ENTRY(pl_db_req) link; /* db->queue (QUEUED) or db->failed (FAILED) */
    pl_db_t *db;
    enum req_kind kind;
    enum req_state state;
    int status;         /* the error to deliver while FAILED */
    struct link *conn;  /* while RUNNING */
    struct event timer; /* deadline: submission + PL_DB_REQUEST_TIMEOUT_MS */
    union {
        pl_db_max_seq_cb max_seq;
        pl_db_history_cb history;
        pl_db_exec_cb exec;
    } cb;
    void *arg;
    uint64_t before_seq; /* REQ_HISTORY */
    int ascending;       /* REQ_SELECT: rows come oldest first (not reversed) */
    unsigned limit;      /* REQ_HISTORY */
    size_t key_len;
    char key[]; /* room bytes or SQL, key_len bytes (not NUL-terminated) */
};

TAILQ_HEAD(req_list, pl_db_req);

/* A link is one MySQL connection of the pool (not a client pl_conn_t). */
enum link_state {
    LINK_DOWN,       /* no session (mysql NULL); no event pending; dispatch() may connect it */
    LINK_CONNECTING, /* mysql_real_connect in progress; io/timer as the library asks */
    LINK_IDLE,       /* connected, no request; io watches EV_READ: readable = server hung up */
    LINK_QUERY,      /* mysql_real_query of sql for req (NULL once cancelled or timed out) */
    LINK_STORE,      /* mysql_store_result of that query */
};

static const char *const link_state_names[] = {"down", "connecting", "idle", "query", "store"};

struct link {
    pl_db_t *db;
    int id; /* index in db->conns, for logs */
    enum link_state state;
    MYSQL *mysql;       /* NULL while DOWN */
    int suspended;      /* a FOO_start() returned events and its FOO_cont() is due */
    struct event io;    /* the socket; re-assigned per wait since the fd changes per connect */
    struct event timer; /* MYSQL_WAIT_TIMEOUT */
    pl_db_req_t *req;   /* the request being run (QUERY/STORE), NULL if none or dropped */
    /* The statement being run: owned here so a cancelled request can be
     * freed while the library may still be sending it. */
    pl_buf_t sql;
};

struct pl_db {
    struct event_base *base;
    pl_mysql_url_t url;
    char where[256]; /* the URL without its password, for logs */
    struct link *conns;
    int nconns;
    struct req_list queue; /* QUEUED requests, oldest first */
    unsigned nqueued;
    struct req_list failed; /* FAILED requests, delivered by on_kick */
    struct event kick;      /* activated to deliver failures and dispatch from the loop */
    uint64_t retry_at;      /* monotonic ms: no connect attempt before this (backoff) */
    unsigned backoff_ms;    /* 0 while the last connect succeeded */
    int in_callback;        /* a user callback is running (pl_db_free is not allowed) */
    int closing;            /* inside pl_db_free: new requests end with PL_DB_ECLOSED */
    pl_db_stats_t st;       /* counters; the "now" fields are computed in pl_db_get_stats */
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_conn_timer(evutil_socket_t fd, short what, void *arg);
static void dispatch(pl_db_t *db);

const char *pl_db_status_name(int status)
{
    switch (status) {
    case PL_DB_OK:
        return "ok";
    case PL_DB_EDOWN:
        return "down";
    case PL_DB_ETIMEOUT:
        return "timeout";
    case PL_DB_EQUERY:
        return "query";
    case PL_DB_ELOST:
        return "lost";
    case PL_DB_EBUSY:
        return "busy";
    case PL_DB_ECLOSED:
        return "closed";
    }
    return "unknown";
}

/* mysql_error() text made safe inside a quoted logfmt value. */
static const char *errtext(MYSQL *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s", m ? mysql_error(m) : "no session");
    for (char *p = buf; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    return buf;
}

/* Client-side errors (2000-2999, 5000-5999) mean the session is unusable;
 * the server's own errors leave it fine. */
static int lost_session(unsigned e)
{
    return (e >= CR_MIN_ERROR && e <= CR_MAX_ERROR) || (e >= CER_MIN_ERROR && e <= CER_MAX_ERROR);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void kick(pl_db_t *db)
{
    event_active(&db->kick, EV_TIMEOUT, 0);
}

static void req_free(pl_db_req_t *req)
{
    event_del(&req->timer);
    free(req);
}

/* Ends a request that is on no list: calls its callback once, then frees it. */
static void deliver(pl_db_req_t *req, int status, const pl_db_row_t *rows, size_t n, uint64_t value)
{
    pl_db_t *db = req->db;
    event_del(&req->timer);
    req->state = REQ_CALLING;
    req->conn = NULL;
    if (status == PL_DB_OK)
        db->st.done++;
    else
        db->st.failed++;
    db->in_callback++;
    switch (req->kind) {
    case REQ_MAX_SEQ:
        req->cb.max_seq(req->arg, status, status == PL_DB_OK ? value : 0);
        break;
    case REQ_HISTORY:
    case REQ_SELECT:
        req->cb.history(req->arg, status, status == PL_DB_OK ? rows : NULL,
                        status == PL_DB_OK ? n : 0);
        break;
    case REQ_EXEC:
        req->cb.exec(req->arg, status, status == PL_DB_OK ? value : 0);
        break;
    }
    db->in_callback--;
    req_free(req);
}

static void fail(pl_db_req_t *req, int status)
{
    deliver(req, status, NULL, 0, 0);
}

/* Fails a request later, from on_kick (used where the caller must not see
 * its callback run, i.e. at submission). */
static void fail_later(pl_db_req_t *req, int status)
{
    event_del(&req->timer);
    req->state = REQ_FAILED;
    req->status = status;
    TAILQ_INSERT_TAIL(&req->db->failed, req, link);
    kick(req->db);
}

static void fail_queue(pl_db_t *db, int status)
{
    pl_db_req_t *req;
    while ((req = TAILQ_FIRST(&db->queue)) != NULL) {
        TAILQ_REMOVE(&db->queue, req, link);
        db->nqueued--;
        fail(req, status);
    }
}

/* ---- connections ------------------------------------------------------------------------- */

static void link_set_state(struct link *c, enum link_state s)
{
    pl_log_debug("mysql connection state\tconn=%d from=%s to=%s", c->id, link_state_names[c->state],
                 link_state_names[s]);
    c->state = s;
    if (s == LINK_QUERY) {
        unsigned busy = 0;
        for (int i = 0; i < c->db->nconns; i++)
            busy += c->db->conns[i].state == LINK_QUERY || c->db->conns[i].state == LINK_STORE;
        if (busy > c->db->st.busy_max)
            c->db->st.busy_max = busy;
    }
}

static int alive(const struct link *c)
{
    return c->state == LINK_IDLE || c->state == LINK_QUERY || c->state == LINK_STORE;
}

static int count_state(const pl_db_t *db, enum link_state s)
{
    int n = 0;
    for (int i = 0; i < db->nconns; i++)
        n += db->conns[i].state == s;
    return n;
}

static int any_alive(const pl_db_t *db)
{
    for (int i = 0; i < db->nconns; i++)
        if (alive(&db->conns[i]))
            return 1;
    return 0;
}

/* Waits for what a FOO_start()/FOO_cont() returned. */
static void conn_wait(struct link *c, int status)
{
    pl_db_t *db = c->db;
    short what = 0;
    c->suspended = 1;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    if (what) {
        event_assign(&c->io, db->base, mysql_get_socket(c->mysql), what, on_io, c);
        event_add(&c->io, NULL);
    }
    if (status & MYSQL_WAIT_TIMEOUT) {
        unsigned ms = mysql_get_timeout_value_ms(c->mysql);
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        event_add(&c->timer, &tv);
    }
}

static void conn_unwatch(struct link *c)
{
    event_del(&c->io);
    event_del(&c->timer);
}

/* Unwinds a suspended operation by telling the library its timeout passed:
 * the pending I/O fails, the library ends the session and the call returns.
 * Only then is mysql_close() safe and free of I/O. */
static void conn_abort(struct link *c)
{
    for (int i = 0; c->suspended && i < ABORT_TRIES; i++) {
        MYSQL *m = c->mysql, *ret;
        MYSQL_RES *res = NULL;
        int err, st = 0;
        switch (c->state) {
        case LINK_CONNECTING:
            st = mysql_real_connect_cont(&ret, m, MYSQL_WAIT_TIMEOUT);
            break;
        case LINK_QUERY:
            st = mysql_real_query_cont(&err, m, MYSQL_WAIT_TIMEOUT);
            break;
        case LINK_STORE:
            st = mysql_store_result_cont(&res, m, MYSQL_WAIT_TIMEOUT);
            if (st == 0 && res != NULL)
                mysql_free_result(res);
            break;
        default:
            assert(!"suspended in a state without an operation");
        }
        c->suspended = st != 0;
    }
    if (c->suspended)
        pl_log_warn("mysql operation did not unwind; closing anyway\tconn=%d", c->id);
    c->suspended = 0;
}

/* Ends the session (any operation in progress is abandoned) and leaves the
 * connection DOWN. The caller has detached c->req. */
static void conn_drop(struct link *c)
{
    assert(c->req == NULL);
    conn_unwatch(c);
    if (c->mysql != NULL) {
        conn_abort(c);
        /* No I/O wait here: after an aborted or failed operation the
         * library has closed the socket; on an idle session this writes a
         * 5-byte COM_QUIT into an empty socket buffer. */
        mysql_close(c->mysql);
        c->mysql = NULL;
    }
    link_set_state(c, LINK_DOWN);
}

static void conn_idle(struct link *c)
{
    link_set_state(c, LINK_IDLE);
    /* The server never speaks first: readable while idle means it closed the
     * session (restart, wait_timeout, kill), so drop it before a request
     * finds out the slow way. */
    event_assign(&c->io, c->db->base, mysql_get_socket(c->mysql), EV_READ, on_io, c);
    event_add(&c->io, NULL);
}

static void connect_failed(struct link *c)
{
    pl_db_t *db = c->db;
    char err[256];
    errtext(c->mysql, err, sizeof(err));
    c->suspended = 0;
    conn_drop(c);
    db->st.connect_fails++;
    int first = db->backoff_ms == 0;
    db->backoff_ms = first ? BACKOFF_MIN_MS : db->backoff_ms * 2;
    if (db->backoff_ms > BACKOFF_MAX_MS)
        db->backoff_ms = BACKOFF_MAX_MS;
    db->retry_at = pl_mono_ms() + db->backoff_ms;
    if (first)
        pl_log_warn("mysql connect failed\tdb=%s conn=%d err=\"%s\" retry_ms=%u", db->where, c->id,
                    err, db->backoff_ms);
    else
        pl_log_debug("mysql connect failed again\tdb=%s conn=%d err=\"%s\" retry_ms=%u", db->where,
                     c->id, err, db->backoff_ms);
}

static void connected(struct link *c)
{
    pl_db_t *db = c->db;
    c->suspended = 0;
    db->st.connects++;
    if (db->backoff_ms != 0)
        pl_log_info("mysql reachable again\tdb=%s conn=%d", db->where, c->id);
    else
        pl_log_debug("mysql connected\tdb=%s conn=%d", db->where, c->id);
    db->backoff_ms = 0;
    db->retry_at = 0;
    conn_idle(c);
}

/* Copies a result set into one allocation, newest-first rows reversed to
 * oldest first, and delivers it. */
static void deliver_history(pl_db_req_t *req, MYSQL_RES *res)
{
    size_t n = (size_t)mysql_num_rows(res), bytes = 0;
    MYSQL_ROW row;
    unsigned long *len;
    unsigned nf = mysql_num_fields(res);
    if (nf != 5 && nf != 6) {
        pl_log_error("mysql history query returned %u columns", mysql_num_fields(res));
        fail(req, PL_DB_EQUERY);
        return;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        len = mysql_fetch_lengths(res);
        bytes += len[1] + len[2] + len[3] + 3 + (nf == 6 ? len[5] + 1 : 0);
    }
    pl_db_row_t *rows = pl_xmalloc(n * sizeof(*rows) + bytes);
    char *p = (char *)(rows + n);
    size_t i = n;
    mysql_data_seek(res, 0);
    while (i > 0 && (row = mysql_fetch_row(res)) != NULL) {
        /* REQ_SELECT may already be oldest first */
        pl_db_row_t *r = req->ascending ? &rows[n - i--] : &rows[--i];
        len = mysql_fetch_lengths(res);
        r->seq = row[0] ? strtoull(row[0], NULL, 10) : 0;
        const char *src[3] = {row[1], row[2], row[3]};
        const char **dst[3] = {&r->msg_id, &r->sender, &r->text};
        size_t *dlen[3] = {&r->msg_id_len, &r->sender_len, &r->text_len};
        for (int k = 0; k < 3; k++) {
            size_t l = src[k] ? len[k + 1] : 0;
            if (l)
                memcpy(p, src[k], l);
            p[l] = '\0';
            *dst[k] = p;
            *dlen[k] = l;
            p += l + 1;
        }
        /* the query turns created_at into unix ms (build_sql) */
        r->ts_ms = row[4] && row[4][0] != '-' ? strtoull(row[4], NULL, 10) : 0;
        r->room = NULL;
        r->room_len = 0;
        if (nf == 6) { /* the cross-room form names each row's room */
            size_t l = row[5] ? len[5] : 0;
            if (l)
                memcpy(p, row[5], l);
            p[l] = '\0';
            r->room = p;
            r->room_len = l;
            p += l + 1;
        }
    }
    assert(i == 0);
    deliver(req, PL_DB_OK, rows, n, 0);
    free(rows);
}

/* The statement finished: hand its result to the request, if one still
 * wants it, with the connection already idle (the callback may submit). */
static void query_done(struct link *c, MYSQL_RES *res)
{
    pl_db_req_t *req = c->req;
    uint64_t value = res ? mysql_num_rows(res) : mysql_affected_rows(c->mysql);
    c->req = NULL;
    c->suspended = 0;
    conn_idle(c);
    if (req == NULL) {
        if (res)
            mysql_free_result(res);
        return;
    }
    if ((req->kind == REQ_HISTORY || req->kind == REQ_SELECT) && res) {
        deliver_history(req, res);
    } else if (req->kind == REQ_MAX_SEQ) {
        MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
        if (row && row[0])
            deliver(req, PL_DB_OK, NULL, 0, strtoull(row[0], NULL, 10));
        else if (row)
            deliver(req, PL_DB_OK, NULL, 0, 0);
        else
            fail(req, PL_DB_EQUERY);
    } else if (req->kind == REQ_EXEC) {
        deliver(req, PL_DB_OK, NULL, 0, value);
    } else {
        fail(req, PL_DB_EQUERY);
    }
    if (res)
        mysql_free_result(res);
}

static void query_failed(struct link *c)
{
    pl_db_req_t *req = c->req;
    unsigned e = mysql_errno(c->mysql);
    char err[256];
    errtext(c->mysql, err, sizeof(err));
    c->req = NULL;
    c->suspended = 0;
    int lost = lost_session(e);
    pl_log_warn("mysql query failed\tdb=%s conn=%d errno=%u err=\"%s\"%s", c->db->where, c->id, e,
                err, lost ? " dropped=1" : "");
    if (lost)
        conn_drop(c);
    else
        conn_idle(c);
    if (req)
        fail(req, lost ? PL_DB_ELOST : PL_DB_EQUERY);
}

/* Runs the connection's current operation: starts it (ready 0) or continues
 * it with the events that happened, until it must wait or is done. */
static void conn_drive(struct link *c, int ready)
{
    pl_db_t *db = c->db;
    const pl_mysql_url_t *u = &db->url;
    int st;
    conn_unwatch(c);
    for (;;) {
        switch (c->state) {
        case LINK_CONNECTING: {
            MYSQL *ret = NULL;
            st = ready ? mysql_real_connect_cont(&ret, c->mysql, ready)
                       : mysql_real_connect_start(&ret, c->mysql, u->host, u->user, u->password,
                                                  u->database, u->port, u->socket, 0);
            if (st)
                goto wait;
            c->suspended = 0;
            if (ret == NULL)
                connect_failed(c);
            else
                connected(c);
            return;
        }
        case LINK_QUERY: {
            int err = 0;
            st = ready ? mysql_real_query_cont(&err, c->mysql, ready)
                       : mysql_real_query_start(&err, c->mysql, c->sql.p, c->sql.n);
            if (st)
                goto wait;
            c->suspended = 0;
            if (err) {
                query_failed(c);
                return;
            }
            link_set_state(c, LINK_STORE);
            ready = 0;
            continue;
        }
        case LINK_STORE: {
            MYSQL_RES *res = NULL;
            st = ready ? mysql_store_result_cont(&res, c->mysql, ready)
                       : mysql_store_result_start(&res, c->mysql);
            if (st)
                goto wait;
            c->suspended = 0;
            if (res == NULL && mysql_errno(c->mysql) != 0)
                query_failed(c);
            else
                query_done(c, res);
            return;
        }
        case LINK_DOWN:
        case LINK_IDLE:
            assert(!"nothing to drive");
            return;
        }
    }
wait:
    conn_wait(c, st);
}

static void conn_connect(struct link *c)
{
    pl_db_t *db = c->db;
    unsigned int tmo = PL_DB_IO_TIMEOUT_S;
    unsigned int proto = db->url.socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    my_bool off = 0;
    assert(c->state == LINK_DOWN && c->mysql == NULL);
    c->mysql = mysql_init(NULL);
    if (c->mysql == NULL) {
        pl_log_error("mysql_init() failed: out of memory");
        abort();
    }
    mysql_options(c->mysql, MYSQL_OPT_NONBLOCK, 0);
    mysql_options(c->mysql, MYSQL_OPT_CONNECT_TIMEOUT, &tmo);
    mysql_options(c->mysql, MYSQL_OPT_READ_TIMEOUT, &tmo);
    mysql_options(c->mysql, MYSQL_OPT_WRITE_TIMEOUT, &tmo);
    mysql_options(c->mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_options(c->mysql, MYSQL_OPT_PROTOCOL, &proto);
    mysql_options(c->mysql, MYSQL_OPT_LOCAL_INFILE, &off);
    link_set_state(c, LINK_CONNECTING);
    conn_drive(c, 0);
}

/* ---- queries ----------------------------------------------------------------------------- */

/* "room=_utf8mb4 X'..'": a hex literal carries any bytes without escaping,
 * and the introducer makes it text so the column's collation (and index)
 * applies. */
static size_t put_room(char *out, const pl_db_req_t *req)
{
    size_t n = (size_t)sprintf(out, "room=_utf8mb4 X'");
    pl_hex(req->key, req->key_len, out + n);
    n += 2 * req->key_len;
    out[n++] = '\'';
    return n;
}

static void build_sql(struct link *c, const pl_db_req_t *req)
{
    pl_buf_t *b = &c->sql;
    size_t n = 0;
    pl_buf_reset(b);
    switch (req->kind) {
    case REQ_MAX_SEQ:
        pl_buf_reserve(b, 128 + 2 * req->key_len);
        n = (size_t)sprintf(b->p, "SELECT COALESCE(MAX(seq),0) FROM messages WHERE ");
        n += put_room(b->p + n, req);
        break;
    case REQ_HISTORY:
        pl_buf_reserve(b, 320 + 2 * req->key_len);
        /* created_at is DATETIME(3) written in UTC: its distance from the
         * epoch as DATETIMEs involves no time zone (unlike UNIX_TIMESTAMP,
         * which reads it in the session's), and the microseconds of a
         * DATETIME(3) are whole ms, so DIV 1000 is exact. */
        n = (size_t)sprintf(b->p, "SELECT seq,msg_id,sender,text,"
                                  "TIMESTAMPDIFF(MICROSECOND,'1970-01-01',created_at) DIV 1000"
                                  " FROM messages WHERE ");
        n += put_room(b->p + n, req);
        n += (size_t)sprintf(b->p + n, " AND seq<%" PRIu64 " ORDER BY seq DESC LIMIT %u",
                             req->before_seq, req->limit);
        break;
    case REQ_EXEC:
    case REQ_SELECT:
        pl_buf_add(b, req->key, req->key_len);
        n = req->key_len;
        break;
    }
    b->n = n;
}

static void conn_run(struct link *c, pl_db_req_t *req)
{
    assert(c->state == LINK_IDLE && c->req == NULL);
    build_sql(c, req);
    req->state = REQ_RUNNING;
    req->conn = c;
    c->req = req;
    link_set_state(c, LINK_QUERY);
    conn_drive(c, 0);
}

static struct link *find_state(pl_db_t *db, enum link_state s)
{
    for (int i = 0; i < db->nconns; i++)
        if (db->conns[i].state == s)
            return &db->conns[i];
    return NULL;
}

/* Gives queued requests to idle connections and opens connections the
 * queue needs. Called from the loop only (never from a submitting call). */
static void dispatch(pl_db_t *db)
{
    struct link *c;
    for (;;) {
        while (db->nqueued > 0 && (c = find_state(db, LINK_IDLE)) != NULL) {
            pl_db_req_t *req = TAILQ_FIRST(&db->queue);
            TAILQ_REMOVE(&db->queue, req, link);
            db->nqueued--;
            conn_run(c, req);
        }
        if (db->nqueued == 0)
            return;
        /* One new connection per waiting request not already covered by one
         * being opened, unless a connect failed recently. */
        int want = (int)db->nqueued - count_state(db, LINK_CONNECTING);
        for (int i = 0; i < db->nconns && want > 0 && pl_mono_ms() >= db->retry_at; i++) {
            if (db->conns[i].state == LINK_DOWN) {
                want--;
                conn_connect(&db->conns[i]);
            }
        }
        /* A connect that finished at once left an idle connection: serve it. */
        if (db->nqueued == 0 || find_state(db, LINK_IDLE) == NULL)
            break;
    }
    /* Nothing alive, nothing connecting and (after a failed connect) no
     * attempt before retry_at: nobody will serve the queue before its
     * requests time out, so tell them now. */
    if (db->nqueued > 0 && !any_alive(db) && count_state(db, LINK_CONNECTING) == 0)
        fail_queue(db, PL_DB_EDOWN);
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct link *c = arg;
    pl_db_t *db = c->db;
    if (c->state == LINK_IDLE) {
        pl_log_info("mysql closed an idle connection\tdb=%s conn=%d", db->where, c->id);
        conn_drop(c);
    } else {
        int ready = 0;
        if (what & EV_READ)
            ready |= MYSQL_WAIT_READ;
        if (what & EV_WRITE)
            ready |= MYSQL_WAIT_WRITE;
        conn_drive(c, ready);
    }
    dispatch(db);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct link *c = arg;
    conn_drive(c, MYSQL_WAIT_TIMEOUT);
    dispatch(c->db);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    pl_db_req_t *req = arg;
    pl_db_t *db = req->db;
    if (req->state == REQ_QUEUED) {
        TAILQ_REMOVE(&db->queue, req, link);
        db->nqueued--;
    } else {
        assert(req->state == REQ_RUNNING);
        struct link *c = req->conn;
        pl_log_warn("mysql request timed out; dropping its connection\tdb=%s conn=%d state=%s",
                    db->where, c->id, link_state_names[c->state]);
        c->req = NULL;
        conn_drop(c);
    }
    fail(req, PL_DB_ETIMEOUT);
    dispatch(db);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    pl_db_t *db = arg;
    pl_db_req_t *req;
    while ((req = TAILQ_FIRST(&db->failed)) != NULL) {
        TAILQ_REMOVE(&db->failed, req, link);
        fail(req, req->status);
    }
    dispatch(db);
}

/* ---- public ------------------------------------------------------------------------------ */

pl_db_t *pl_db_new(struct event_base *base, const char *mysql_url, int pool_size)
{
    char err[256];
    pl_db_t *db = pl_xcalloc(1, sizeof(*db));
    if (pl_mysql_url_parse(mysql_url, &db->url, err, sizeof(err)) != 0) {
        pl_log_error("bad mysql_url\terr=\"%s\"", err);
        free(db);
        return NULL;
    }
    pl_mysql_url_describe(&db->url, db->where, sizeof(db->where));
    db->base = base;
    db->nconns = pool_size > 0 ? pool_size : 1;
    db->conns = pl_xcalloc((size_t)db->nconns, sizeof(*db->conns));
    for (int i = 0; i < db->nconns; i++) {
        struct link *c = &db->conns[i];
        c->db = db;
        c->id = i;
        c->state = LINK_DOWN;
        event_assign(&c->io, base, -1, 0, on_io, c);
        evtimer_assign(&c->timer, base, on_conn_timer, c);
    }
    TAILQ_INIT(&db->queue);
    TAILQ_INIT(&db->failed);
    event_assign(&db->kick, base, -1, 0, on_kick, db);
    db->st.pool_size = (unsigned)db->nconns;
    return db;
}

void pl_db_free(pl_db_t *db)
{
    pl_db_req_t *req;
    if (db == NULL)
        return;
    assert(db->in_callback == 0 && !db->closing);
    db->closing = 1;
    /* Detach everything and close the sessions before any callback runs, so
     * callbacks find a pool with nothing left to run. */
    for (int i = 0; i < db->nconns; i++) {
        struct link *c = &db->conns[i];
        if ((req = c->req) != NULL) {
            c->req = NULL;
            fail_later(req, PL_DB_ECLOSED);
        }
        conn_drop(c);
        pl_buf_free(&c->sql);
    }
    while ((req = TAILQ_FIRST(&db->queue)) != NULL) {
        TAILQ_REMOVE(&db->queue, req, link);
        db->nqueued--;
        fail_later(req, PL_DB_ECLOSED);
    }
    /* Requests submitted by these callbacks land on db->failed too. */
    while ((req = TAILQ_FIRST(&db->failed)) != NULL) {
        TAILQ_REMOVE(&db->failed, req, link);
        fail(req, req->status);
    }
    event_del(&db->kick);
    pl_mysql_url_free(&db->url);
    free(db->conns);
    free(db);
}

static pl_db_req_t *submit(pl_db_t *db, enum req_kind kind, const char *key, size_t key_len,
                           void *arg)
{
    pl_db_req_t *req = pl_xcalloc(1, sizeof(*req) + key_len);
    req->db = db;
    req->kind = kind;
    req->arg = arg;
    req->key_len = key_len;
    if (key_len)
        memcpy(req->key, key, key_len);
    evtimer_assign(&req->timer, db->base, on_deadline, req);
    return req;
}

static pl_db_req_t *enqueue(pl_db_req_t *req)
{
    pl_db_t *db = req->db;
    if (db->closing) {
        fail_later(req, PL_DB_ECLOSED);
        return req;
    }
    if (db->nqueued >= PL_DB_QUEUE_MAX) {
        fail_later(req, PL_DB_EBUSY);
        return req;
    }
    /* In backoff with nothing alive or trying: fail fast instead of queueing
     * for a connect we will not attempt yet. */
    if (pl_mono_ms() < db->retry_at && !any_alive(db) && count_state(db, LINK_CONNECTING) == 0) {
        fail_later(req, PL_DB_EDOWN);
        return req;
    }
    struct timeval tv = {.tv_sec = PL_DB_REQUEST_TIMEOUT_MS / 1000,
                         .tv_usec = (PL_DB_REQUEST_TIMEOUT_MS % 1000) * 1000};
    req->state = REQ_QUEUED;
    TAILQ_INSERT_TAIL(&db->queue, req, link);
    db->nqueued++;
    event_add(&req->timer, &tv);
    kick(db);
    return req;
}

pl_db_req_t *pl_db_max_seq(pl_db_t *db, const char *room, size_t room_len, pl_db_max_seq_cb cb,
                           void *arg)
{
    pl_db_req_t *req = submit(db, REQ_MAX_SEQ, room, room_len, arg);
    req->cb.max_seq = cb;
    return enqueue(req);
}

pl_db_req_t *pl_db_history(pl_db_t *db, const char *room, size_t room_len, uint64_t before_seq,
                           unsigned limit, pl_db_history_cb cb, void *arg)
{
    pl_db_req_t *req = submit(db, REQ_HISTORY, room, room_len, arg);
    req->cb.history = cb;
    req->before_seq = before_seq;
    req->limit = limit < PL_DB_HISTORY_MAX ? limit : PL_DB_HISTORY_MAX;
    return enqueue(req);
}

pl_db_req_t *pl_db_select(pl_db_t *db, const char *sql, size_t sql_len, int ascending,
                          pl_db_history_cb cb, void *arg)
{
    pl_db_req_t *req = submit(db, REQ_SELECT, sql, sql_len, arg);
    req->cb.history = cb;
    req->ascending = ascending;
    return enqueue(req);
}

pl_db_req_t *pl_db_exec(pl_db_t *db, const char *sql, size_t sql_len, pl_db_exec_cb cb, void *arg)
{
    pl_db_req_t *req = submit(db, REQ_EXEC, sql, sql_len, arg);
    req->cb.exec = cb;
    return enqueue(req);
}

void pl_db_cancel(pl_db_req_t *req)
{
    pl_db_t *db = req->db;
    switch (req->state) {
    case REQ_QUEUED:
        TAILQ_REMOVE(&db->queue, req, link);
        db->nqueued--;
        break;
    case REQ_FAILED:
        TAILQ_REMOVE(&db->failed, req, link);
        break;
    case REQ_RUNNING:
        /* The connection finishes the statement (its SQL lives in the
         * connection) and throws the result away. */
        req->conn->req = NULL;
        break;
    case REQ_CALLING:
        return;
    }
    req_free(req);
}

void pl_db_get_stats(const pl_db_t *db, pl_db_stats_t *out)
{
    *out = db->st;
    out->connected = out->busy = 0;
    for (int i = 0; i < db->nconns; i++) {
        out->connected += alive(&db->conns[i]);
        out->busy += db->conns[i].state == LINK_QUERY || db->conns[i].state == LINK_STORE;
    }
    out->queued = db->nqueued;
}
