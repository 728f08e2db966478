/*
 * Batched, idempotent INSERTs into `messages` (see writer.h).
 *
 * Exactly-once comes from the primary key (room, seq): a batch is written
 * with INSERT IGNORE, so a re-delivered entry cannot create a second row.
 * When fewer rows were inserted than sent, the batch's keys are read back
 * inside the same transaction and compared by msg_id, which separates
 * harmless re-deliveries from real conflicts. Values are escaped with
 * mysql_real_escape_string on a utf8mb4 connection and always passed with
 * their lengths, so NULs and 4-byte characters survive.
 */
#include "writer.h"
#include "keys.h"
#include "log.h"
#include "parse.h"
#include "utf8.h"
#include "util.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- pure parts ------------------------------------------------------- */

static int field_is(pl_arch_bytes_t f, const char *name)
{
    size_t n = strlen(name);
    return f.n == n && memcmp(f.p, name, n) == 0;
}

int pl_arch_row_parse(pl_arch_row_t *row, const pl_arch_bytes_t *fields, size_t nfields,
                      const char **why)
{
    const pl_arch_bytes_t *room = NULL, *seq = NULL, *msg_id = NULL, *from = NULL, *text = NULL,
                          *ts = NULL;
    if (nfields % 2 != 0) {
        *why = "odd number of fields";
        return -1;
    }
    for (size_t i = 0; i + 1 < nfields; i += 2) {
        const pl_arch_bytes_t *v = &fields[i + 1];
        if (field_is(fields[i], "room"))
            room = v;
        else if (field_is(fields[i], "seq"))
            seq = v;
        else if (field_is(fields[i], "msg_id"))
            msg_id = v;
        else if (field_is(fields[i], "from"))
            from = v;
        else if (field_is(fields[i], "text"))
            text = v;
        else if (field_is(fields[i], "ts"))
            ts = v;
    }
    size_t chars;
#define REQUIRE(f)                                                                                 \
    if ((f) == NULL) {                                                                             \
        *why = "missing field " #f;                                                                \
        return -1;                                                                                 \
    }
    REQUIRE(room);
    REQUIRE(seq);
    REQUIRE(msg_id);
    REQUIRE(from);
    REQUIRE(text);
    REQUIRE(ts);
#undef REQUIRE
    memset(row, 0, sizeof(*row));
    if (room->n == 0 || pl_utf8_chars(room->p, room->n, &chars) < 0 ||
        chars > PL_ARCH_ROOM_MAX_CHARS) {
        *why = "bad room (empty, not UTF-8 or longer than 128 characters)";
        return -1;
    }
    if (pl_parse_u64(seq->p, seq->n, &row->seq) < 0) {
        *why = "bad seq (not an unsigned decimal)";
        return -1;
    }
    if (msg_id->n == 0 || msg_id->n > PL_ARCH_MSGID_MAX_BYTES) {
        *why = "bad msg_id (empty or longer than 64 bytes)";
        return -1;
    }
    if (pl_utf8_chars(from->p, from->n, &chars) < 0 || chars > PL_ARCH_SENDER_MAX_CHARS) {
        *why = "bad from (not UTF-8 or longer than 64 characters)";
        return -1;
    }
    if (text->n > PL_TEXT_MAX || pl_utf8_validate(text->p, text->n) < 0) {
        *why = "bad text (not UTF-8 or longer than 65535 bytes)";
        return -1;
    }
    if (pl_parse_u64(ts->p, ts->n, &row->ts_ms) < 0 || row->ts_ms > PL_ARCH_TS_MAX) {
        *why = "bad ts (not unix milliseconds)";
        return -1;
    }
    row->room = *room;
    row->msg_id = *msg_id;
    row->sender = *from;
    row->text = *text;
    return 0;
}

void pl_arch_format_ts(uint64_t ts_ms, char out[24])
{
    time_t secs = (time_t)(ts_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* ts_ms <= PL_ARCH_TS_MAX keeps the year at four digits. */
    snprintf(out, 24, "%04u-%02u-%02u %02u:%02u:%02u.%03u", (unsigned)(tm.tm_year + 1900) % 10000,
             (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100,
             (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100,
             (unsigned)(ts_ms % 1000));
}

/* Appends 'escaped' (quotes included). */
static void put_quoted(pl_buf_t *b, MYSQL *m, pl_arch_bytes_t v)
{
    /* the escaper writes up to 2n bytes and a NUL */
    pl_buf_reserve(b, 2 * v.n + 3);
    b->p[b->n++] = '\'';
    b->n += mysql_real_escape_string(m, b->p + b->n, v.p, (unsigned long)v.n);
    b->p[b->n++] = '\'';
}

static void put_u64(pl_buf_t *b, uint64_t v)
{
    pl_buf_printf(b, "%llu", (unsigned long long)v);
}

/* Upper bound of the bytes one row adds to an INSERT. */
static size_t row_worst(const pl_arch_row_t *r)
{
    return 2 * (r->room.n + r->msg_id.n + r->sender.n + r->text.n) + 128;
}

size_t pl_arch_build_insert(pl_buf_t *b, MYSQL *m, const pl_arch_row_t *rows, size_t n,
                            size_t max_bytes)
{
    pl_buf_reset(b);
    pl_buf_add_str(
        b, "INSERT IGNORE INTO messages (room, seq, msg_id, sender, text, created_at) VALUES ");
    size_t k;
    for (k = 0; k < n; k++) {
        const pl_arch_row_t *r = &rows[k];
        if (k > 0 && b->n + row_worst(r) > max_bytes)
            break;
        if (k > 0)
            pl_buf_add(b, ",", 1);
        pl_buf_add(b, "(", 1);
        put_quoted(b, m, r->room);
        pl_buf_add(b, ",", 1);
        put_u64(b, r->seq);
        pl_buf_add(b, ",", 1);
        put_quoted(b, m, r->msg_id);
        pl_buf_add(b, ",", 1);
        put_quoted(b, m, r->sender);
        pl_buf_add(b, ",", 1);
        put_quoted(b, m, r->text);
        char ts[24];
        pl_arch_format_ts(r->ts_ms, ts);
        pl_buf_add(b, ",'", 2);
        pl_buf_add_str(b, ts);
        pl_buf_add(b, "')", 2);
    }
    return k;
}

void pl_arch_build_keycheck(pl_buf_t *b, MYSQL *m, const pl_arch_row_t *rows, size_t n)
{
    pl_buf_reset(b);
    pl_buf_add_str(b, "SELECT room, seq, msg_id FROM messages WHERE (room, seq) IN (");
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            pl_buf_add(b, ",", 1);
        pl_buf_add(b, "(", 1);
        put_quoted(b, m, rows[k].room);
        pl_buf_add(b, ",", 1);
        put_u64(b, rows[k].seq);
        pl_buf_add(b, ")", 1);
    }
    pl_buf_add(b, ")", 1);
}

static int bytes_eq(pl_arch_bytes_t a, pl_arch_bytes_t b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

size_t pl_arch_classify(const pl_arch_row_t *rows, size_t n, const pl_arch_row_t *found,
                        size_t nfound, uint8_t *status)
{
    size_t stored = 0;
    for (size_t i = 0; i < n; i++) {
        status[i] = ROW_MISSING;
        for (size_t j = 0; j < nfound; j++) {
            if (found[j].seq != rows[i].seq || !bytes_eq(found[j].room, rows[i].room))
                continue;
            status[i] = bytes_eq(found[j].msg_id, rows[i].msg_id) ? ROW_STORED : ROW_CONFLICT;
            break;
        }
        if (status[i] == ROW_STORED)
            stored++;
    }
    return stored;
}

/* ---- connection ------------------------------------------------------- */

struct pl_writer {
    const pl_mysql_url_t *url;
    MYSQL *m;        /* NULL while disconnected */
    size_t max_stmt; /* bytes one statement may take (from max_allowed_packet) */
    pl_buf_t sql;
    char err[512];
};

int pl_arch_mysql_transient(unsigned e)
{
    if (e >= 2000 && e < 3000) /* CR_*: client side, the connection is gone or never came */
        return 1;
    switch (e) {
    case ER_CON_COUNT_ERROR: /* 1040 too many connections */
    case ER_SERVER_SHUTDOWN: /* 1053 */
    case ER_NET_READ_ERROR_FROM_PIPE:
    case ER_NET_FCNTL_ERROR:
    case ER_NET_PACKETS_OUT_OF_ORDER:
    case ER_NET_UNCOMPRESS_ERROR:
    case ER_NET_READ_ERROR:
    case ER_NET_READ_INTERRUPTED:
    case ER_NET_ERROR_ON_WRITE:
    case ER_NET_WRITE_INTERRUPTED:
    case ER_ERROR_DURING_COMMIT:       /* 1180 */
    case ER_LOCK_WAIT_TIMEOUT:         /* 1205 */
    case ER_LOCK_DEADLOCK:             /* 1213 */
    case ER_OPTION_PREVENTS_STATEMENT: /* 1290 e.g. --read-only during a failover */
    case ER_QUERY_INTERRUPTED:         /* 1317 */
    case 1836:                         /* ER_READ_ONLY_MODE */
    case 1927:                         /* ER_CONNECTION_KILLED */
    case 4031:                         /* ER_CLIENT_INTERACTION_TIMEOUT */
        return 1;
    default:
        return 0;
    }
}

MYSQL *pl_arch_mysql_open(const pl_mysql_url_t *url, unsigned long flags, char *err, size_t errlen,
                          unsigned *errnum)
{
    MYSQL *m = mysql_init(NULL);
    if (m == NULL) {
        snprintf(err, errlen, "mysql_init() failed");
        if (errnum)
            *errnum = CR_OUT_OF_MEMORY;
        return NULL;
    }
    unsigned connect_timeout = 5, rw_timeout = 60;
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
    if (url->socket) {
        unsigned proto = MYSQL_PROTOCOL_SOCKET;
        mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    }
    if (mysql_real_connect(m, url->host, url->user, url->password, url->database, url->port,
                           url->socket, flags) == NULL) {
        snprintf(err, errlen, "%s", mysql_error(m));
        if (errnum)
            *errnum = mysql_errno(m);
        mysql_close(m);
        return NULL;
    }
    /* DATETIME literals are built in UTC by the archiver; pin the session
     * so NOW() and friends in migrations agree. */
    if (mysql_query(m, "SET time_zone = '+00:00'") != 0) {
        snprintf(err, errlen, "%s", mysql_error(m));
        if (errnum)
            *errnum = mysql_errno(m);
        mysql_close(m);
        return NULL;
    }
    return m;
}

pl_writer_t *pl_writer_new(const pl_mysql_url_t *url)
{
    pl_writer_t *w = pl_xcalloc(1, sizeof(*w));
    w->url = url;
    return w;
}

static void disconnect(pl_writer_t *w)
{
    if (w->m) {
        mysql_close(w->m);
        w->m = NULL;
    }
}

void pl_writer_free(pl_writer_t *w)
{
    if (w == NULL)
        return;
    disconnect(w);
    pl_buf_free(&w->sql);
    free(w);
}

const char *pl_writer_error(const pl_writer_t *w)
{
    return w->err;
}

/* Records the error on the connection, drops it, and says whether to retry. */
static int fail(pl_writer_t *w, const char *what)
{
    unsigned e = mysql_errno(w->m);
    snprintf(w->err, sizeof(w->err), "%s failed: %s (errno %u)", what, mysql_error(w->m), e);
    disconnect(w);
    return pl_arch_mysql_transient(e) ? WRITE_RETRY : WRITE_FATAL;
}

static int connect_(pl_writer_t *w)
{
    char err[400];
    unsigned e = 0;
    w->m = pl_arch_mysql_open(w->url, 0, err, sizeof(err), &e);
    if (w->m == NULL) {
        snprintf(w->err, sizeof(w->err), "connect failed: %s (errno %u)", err, e);
        return pl_arch_mysql_transient(e) ? WRITE_RETRY : WRITE_FATAL;
    }
    /* Read back other transactions' committed rows in the key check. */
    if (mysql_query(w->m, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0)
        return fail(w, "SET TRANSACTION ISOLATION");
    if (mysql_query(w->m, "SELECT @@max_allowed_packet") != 0)
        return fail(w, "SELECT @@max_allowed_packet");
    MYSQL_RES *res = mysql_store_result(w->m);
    if (res == NULL)
        return fail(w, "SELECT @@max_allowed_packet");
    MYSQL_ROW row = mysql_fetch_row(res);
    unsigned long long maxp = row && row[0] ? strtoull(row[0], NULL, 10) : 0;
    mysql_free_result(res);
    /* Leave room for the protocol header; clamp to something sane. */
    if (maxp < 65536)
        maxp = 65536;
    if (maxp > (64ULL << 20))
        maxp = 64ULL << 20;
    w->max_stmt = (size_t)maxp - 1024;
    return WRITE_OK;
}

static int query(pl_writer_t *w, const char *sql, size_t len, const char *what)
{
    if (mysql_real_query(w->m, sql, (unsigned long)len) != 0)
        return fail(w, what);
    return WRITE_OK;
}

int pl_writer_write(pl_writer_t *w, const pl_arch_row_t *rows, size_t n, uint8_t *status,
                    pl_write_result_t *res)
{
    memset(res, 0, sizeof(*res));
    int rc;
    if (w->m == NULL && (rc = connect_(w)) != WRITE_OK)
        return rc;
    if ((rc = query(w, "START TRANSACTION", 17, "START TRANSACTION")) != WRITE_OK)
        return rc;

    uint64_t inserted = 0;
    for (size_t i = 0; i < n;) {
        size_t k = pl_arch_build_insert(&w->sql, w->m, rows + i, n - i, w->max_stmt);
        if ((rc = query(w, w->sql.p, w->sql.n, "INSERT")) != WRITE_OK)
            return rc;
        inserted += mysql_affected_rows(w->m);
        i += k;
    }

    if (inserted < n) {
        /* Some keys existed already: find out whether with the same msg_id. */
        pl_arch_build_keycheck(&w->sql, w->m, rows, n);
        if ((rc = query(w, w->sql.p, w->sql.n, "SELECT keys")) != WRITE_OK)
            return rc;
        MYSQL_RES *r = mysql_store_result(w->m);
        if (r == NULL)
            return fail(w, "SELECT keys");
        size_t nfound = (size_t)mysql_num_rows(r);
        pl_arch_row_t *found = pl_xcalloc(nfound ? nfound : 1, sizeof(*found));
        MYSQL_ROW row;
        size_t j = 0;
        while (j < nfound && (row = mysql_fetch_row(r)) != NULL) {
            unsigned long *len = mysql_fetch_lengths(r);
            found[j].room = (pl_arch_bytes_t){row[0], len[0]};
            found[j].seq = strtoull(row[1], NULL, 10);
            found[j].msg_id = (pl_arch_bytes_t){row[2], len[2]};
            j++;
        }
        size_t stored = pl_arch_classify(rows, n, found, j, status);
        free(found);
        mysql_free_result(r);
        for (size_t i = 0; i < n; i++) {
            if (status[i] == ROW_CONFLICT)
                res->conflicts++;
            else if (status[i] == ROW_MISSING)
                res->missing++;
        }
        res->inserted = inserted;
        res->duplicates = stored >= inserted ? stored - inserted : 0;
    } else {
        memset(status, ROW_STORED, n);
        res->inserted = inserted;
    }
    if ((rc = query(w, "COMMIT", 6, "COMMIT")) != WRITE_OK) {
        memset(res, 0, sizeof(*res));
        return rc;
    }
    return WRITE_OK;
}
