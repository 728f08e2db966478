/*
 * dbcheck: drives gateway/store/db.c against a live MariaDB so
 * tests/integration/test_db_pool.py can check it from the outside.
 *
 *   dbcheck [--pool N] URL COMMAND [ARGS]
 *     maxseq ROOM                  highest archived seq of ROOM
 *     history ROOM BEFORE LIMIT    rows (one line each), then a summary
 *     exec SQL                     raw statement, reports its row count
 *     concurrent N ROOM            N history queries at once; all must succeed
 *     timer [SQL]                  SQL (default SELECT SLEEP(1)) while a 10 ms
 *                                  timer ticks: the loop must not block
 *     cancel ROOM                  cancelled requests never call back
 *     free ROOM                    pl_db_free with requests queued and running:
 *                                  each ends once with "closed"
 *     repl                         commands from stdin, "ID maxseq ROOM",
 *                                  "ID history ROOM BEFORE LIMIT", "ID exec SQL",
 *                                  "ID stats"; answers as they complete
 *
 * A string argument written "hex:<hex digits>" is decoded first (rooms with
 * odd bytes, SQL with spaces in repl). Output is one JSON object per line;
 * byte strings from the database are printed as hex. Every result carries
 * elapsed_ms and ticks (10 ms timer ticks seen meanwhile). Exit status: 0 if
 * the scenario's own checks passed, 1 if not, 2 on bad usage, 3 if the
 * watchdog (60 s) fired.
 */
#include "db.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WATCHDOG_S 60
#define TICK_MS 10

static struct event_base *base;
static pl_db_t *db;
static uint64_t ticks;
static int pending;  /* callbacks still expected before the scenario ends */
static int failures; /* checks that did not hold */
static int unwanted; /* callbacks that must not have happened */
static int pool = 2;
static int repl; /* the loop runs until stdin closes, not until pending drops to 0 */

struct job {
    long id; /* repl: the caller's id; -1 elsewhere */
    const char *op;
    uint64_t t0;
    uint64_t ticks0;
    pl_db_req_t *req;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    ticks++;
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    printf("{\"op\":\"watchdog\",\"status\":\"hang\",\"pending\":%d}\n", pending);
    fflush(stdout);
    _exit(3);
}

static int unhex(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* An argument's bytes: "hex:..." decoded, anything else as is. Returns a
 * heap copy (NUL-terminated too), or NULL on bad hex. */
static char *arg_bytes(const char *s, size_t *len)
{
    if (strncmp(s, "hex:", 4) != 0) {
        *len = strlen(s);
        return pl_xstrdup(s);
    }
    s += 4;
    size_t n = strlen(s);
    if (n % 2)
        return NULL;
    char *out = pl_xmalloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = unhex(s[2 * i]), lo = unhex(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (char)(hi << 4 | lo);
    }
    out[n / 2] = '\0';
    *len = n / 2;
    return out;
}

static void put_hex(const char *key, const char *p, size_t n)
{
    char *h = pl_xmalloc(2 * n + 1);
    pl_hex(p, n, h);
    printf(",\"%s\":\"%s\"", key, h);
    free(h);
}

static struct job *job_new(long id, const char *op)
{
    struct job *j = pl_xcalloc(1, sizeof(*j));
    j->id = id;
    j->op = op;
    j->t0 = pl_mono_ms();
    j->ticks0 = ticks;
    pending++;
    return j;
}

/* Prints the common head of a result line (without the closing brace). */
static void job_head(const struct job *j, int status)
{
    printf("{");
    if (j->id >= 0)
        printf("\"id\":%ld,", j->id);
    printf("\"op\":\"%s\",\"status\":\"%s\",\"code\":%d,\"elapsed_ms\":%" PRIu64
           ",\"ticks\":%" PRIu64,
           j->op, pl_db_status_name(status), status, pl_mono_ms() - j->t0, ticks - j->ticks0);
}

static void job_done(struct job *j)
{
    printf("}\n");
    fflush(stdout);
    free(j);
    if (--pending == 0 && db != NULL && !repl)
        event_base_loopbreak(base);
}

static void on_max_seq(void *arg, int status, uint64_t max_seq)
{
    struct job *j = arg;
    job_head(j, status);
    printf(",\"max_seq\":%" PRIu64, max_seq);
    job_done(j);
}

static void on_history(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    struct job *j = arg;
    for (size_t i = 0; i < n; i++) {
        printf("{");
        if (j->id >= 0)
            printf("\"id\":%ld,", j->id);
        printf("\"row\":%zu,\"seq\":%" PRIu64 ",\"ts_ms\":%" PRIu64, i, rows[i].seq, rows[i].ts_ms);
        put_hex("msg_id", rows[i].msg_id, rows[i].msg_id_len);
        put_hex("sender", rows[i].sender, rows[i].sender_len);
        put_hex("text", rows[i].text, rows[i].text_len);
        printf("}\n");
    }
    job_head(j, status);
    printf(",\"n\":%zu", n);
    job_done(j);
}

static void on_exec(void *arg, int status, uint64_t nrows)
{
    struct job *j = arg;
    job_head(j, status);
    printf(",\"nrows\":%" PRIu64, nrows);
    job_done(j);
}

static void print_stats(void)
{
    pl_db_stats_t s;
    pl_db_get_stats(db, &s);
    printf("\"pool\":%u,\"connected\":%u,\"busy\":%u,\"busy_max\":%u,\"queued\":%u,"
           "\"connects\":%" PRIu64 ",\"connect_fails\":%" PRIu64 ",\"done\":%" PRIu64
           ",\"failed\":%" PRIu64,
           s.pool_size, s.connected, s.busy, s.busy_max, s.queued, s.connects, s.connect_fails,
           s.done, s.failed);
}

/* ---- concurrent ---------------------------------------------------------------------- */

static int conc_ok, conc_failed;
static long conc_rows = -1;

static void on_conc(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    struct job *j = arg;
    if (status != PL_DB_OK) {
        conc_failed++;
        fprintf(stderr, "concurrent: request failed: %s\n", pl_db_status_name(status));
    } else {
        conc_ok++;
        if (conc_rows < 0)
            conc_rows = (long)n;
        else if (conc_rows != (long)n)
            failures++;
    }
    free(j);
    if (--pending == 0)
        event_base_loopbreak(base);
}

/* ---- cancel -------------------------------------------------------------------------- */

static void on_unwanted_history(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    unwanted++;
}

static void on_unwanted_exec(void *arg, int status, uint64_t nrows)
{
    unwanted++;
}

static pl_db_req_t *self_req;

static void on_self_cancel(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    /* Cancelling your own request from its callback is a no-op. */
    pl_db_cancel(self_req);
    if (status != PL_DB_OK)
        failures++;
    pending--;
}

static pl_db_req_t *running_req;
static char *cancel_room;
static size_t cancel_room_len;

static void on_cancel_running(evutil_socket_t fd, short what, void *arg)
{
    pl_db_stats_t s;
    pl_db_get_stats(db, &s);
    printf("{\"op\":\"cancel_running\",\"busy\":%u}\n", s.busy);
    pl_db_cancel(running_req);
}

static void on_cancel_after(evutil_socket_t fd, short what, void *arg)
{
    /* The cancelled SLEEP has finished on its connection by now: the pool
     * must still answer. */
    pl_db_max_seq(db, cancel_room, cancel_room_len, on_max_seq, job_new(-1, "maxseq"));
}

/* ---- free ---------------------------------------------------------------------------- */

static int closed_calls;
static pl_db_req_t *free_victim; /* cancelled from the first "closed" history callback */
static int free_resubmitted;

static void on_free_history(void *arg, int status, const pl_db_row_t *rows, size_t n)
{
    if (status != PL_DB_ECLOSED) {
        unwanted++;
        return;
    }
    closed_calls++;
    if (free_victim) {
        pl_db_cancel(free_victim);
        free_victim = NULL;
    }
    if (!free_resubmitted) {
        /* Submitting while the pool is being freed: ends "closed" too. */
        free_resubmitted = 1;
        pl_db_history(db, "x", 1, 10, 10, on_free_history, NULL);
    }
}

static void on_free_exec(void *arg, int status, uint64_t nrows)
{
    if (status != PL_DB_ECLOSED)
        unwanted++;
    else
        closed_calls++;
}

static void on_free_now(evutil_socket_t fd, short what, void *arg)
{
    pl_db_stats_t s;
    pl_db_get_stats(db, &s);
    pl_db_free(db);
    db = NULL;
    printf("{\"op\":\"free\",\"freed_busy\":%u,\"freed_queued\":%u,\"closed\":%d}\n", s.busy,
           s.queued, closed_calls);
    fflush(stdout);
}

static void on_free_done(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(base);
}

/* ---- repl ---------------------------------------------------------------------------- */

static char line[1 << 16];
static size_t line_len;
static int stdin_eof;

static void repl_line(char *s)
{
    char *argv[8];
    int argc = 0;
    for (char *tok = strtok(s, " \t\r"); tok && argc < 8; tok = strtok(NULL, " \t\r"))
        argv[argc++] = tok;
    if (argc < 2)
        return;
    long id = strtol(argv[0], NULL, 10);
    size_t len = 0;
    char *str = argc >= 3 ? arg_bytes(argv[2], &len) : NULL;
    if (strcmp(argv[1], "maxseq") == 0 && argc == 3 && str) {
        pl_db_max_seq(db, str, len, on_max_seq, job_new(id, "maxseq"));
    } else if (strcmp(argv[1], "history") == 0 && argc == 5 && str) {
        pl_db_history(db, str, len, strtoull(argv[3], NULL, 10),
                      (unsigned)strtoul(argv[4], NULL, 10), on_history, job_new(id, "history"));
    } else if (strcmp(argv[1], "exec") == 0 && argc == 3 && str) {
        pl_db_exec(db, str, len, on_exec, job_new(id, "exec"));
    } else if (strcmp(argv[1], "stats") == 0) {
        printf("{\"id\":%ld,\"op\":\"stats\",", id);
        print_stats();
        printf("}\n");
        fflush(stdout);
    } else {
        printf("{\"id\":%ld,\"op\":\"error\",\"status\":\"usage\"}\n", id);
        fflush(stdout);
    }
    free(str);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    ssize_t n = read(fd, line + line_len, sizeof(line) - 1 - line_len);
    if (n <= 0) {
        stdin_eof = 1;
        event_base_loopbreak(base);
        return;
    }
    line_len += (size_t)n;
    char *nl;
    while ((nl = memchr(line, '\n', line_len)) != NULL) {
        *nl = '\0';
        repl_line(line);
        size_t used = (size_t)(nl + 1 - line);
        memmove(line, nl + 1, line_len - used);
        line_len -= used;
    }
    if (line_len == sizeof(line) - 1)
        line_len = 0; /* an overlong line: drop it */
}

/* ---- main ---------------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: dbcheck [--pool N] URL maxseq ROOM | history ROOM BEFORE LIMIT | "
                    "exec SQL | concurrent N ROOM | timer [SQL] | cancel ROOM | free ROOM | "
                    "repl\n");
    return 2;
}

int main(int argc, char **argv)
{
    int ai = 1;
    if (argc > 2 && strcmp(argv[1], "--pool") == 0) {
        pool = atoi(argv[2]);
        ai = 3;
    }
    if (argc - ai < 2)
        return usage();
    const char *url = argv[ai], *cmd = argv[ai + 1];
    char **args = argv + ai + 2;
    int nargs = argc - ai - 2;

    signal(SIGPIPE, SIG_IGN);
    pl_log_init("dbcheck", -1);
    const char *lv = getenv("DBCHECK_LOG");
    if (lv && pl_log_level_parse(lv) >= 0)
        pl_log_level = pl_log_level_parse(lv);
    base = event_base_new();
    db = pl_db_new(base, url, pool);
    if (db == NULL) {
        printf("{\"op\":\"new\",\"status\":\"bad_url\"}\n");
        event_base_free(base);
        return 1;
    }
    struct timeval tick = {0, TICK_MS * 1000}, wd = {WATCHDOG_S, 0};
    struct event *ticker = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(ticker, &tick);
    struct event *watchdog = evtimer_new(base, on_watchdog, NULL);
    struct event *ev_in = NULL, *t1 = NULL, *t2 = NULL;
    char *s = NULL;
    size_t len = 0;
    int rc = 2;

    if (strcmp(cmd, "maxseq") == 0 && nargs == 1 && (s = arg_bytes(args[0], &len))) {
        pl_db_max_seq(db, s, len, on_max_seq, job_new(-1, "maxseq"));
    } else if (strcmp(cmd, "history") == 0 && nargs == 3 && (s = arg_bytes(args[0], &len))) {
        pl_db_history(db, s, len, strtoull(args[1], NULL, 10), (unsigned)strtoul(args[2], NULL, 10),
                      on_history, job_new(-1, "history"));
    } else if (strcmp(cmd, "exec") == 0 && nargs == 1 && (s = arg_bytes(args[0], &len))) {
        pl_db_exec(db, s, len, on_exec, job_new(-1, "exec"));
    } else if (strcmp(cmd, "concurrent") == 0 && nargs == 2 && (s = arg_bytes(args[1], &len))) {
        int n = atoi(args[0]);
        for (int i = 0; i < n; i++) {
            struct job *j = job_new(-1, "concurrent");
            pl_db_history(db, s, len, UINT64_MAX, 50, on_conc, j);
        }
    } else if (strcmp(cmd, "timer") == 0 && nargs <= 1) {
        static const char sleep_sql[] = "SELECT SLEEP(1)";
        s = nargs ? arg_bytes(args[0], &len) : pl_xstrdup(sleep_sql);
        len = nargs ? len : sizeof(sleep_sql) - 1;
        if (s) {
            pl_db_exec(db, s, len, on_exec, job_new(-1, "timer"));
        }
    } else if (strcmp(cmd, "cancel") == 0 && nargs == 1 && (s = arg_bytes(args[0], &len))) {
        cancel_room = s;
        cancel_room_len = len;
        /* Queued: cancelled before the loop ever runs. */
        pl_db_cancel(pl_db_history(db, s, len, UINT64_MAX, 10, on_unwanted_history, NULL));
        /* Running: a slow statement cancelled while the server works on it. */
        static const char sleep_sql[] = "SELECT SLEEP(0.3)";
        running_req = pl_db_exec(db, sleep_sql, sizeof(sleep_sql) - 1, on_unwanted_exec, NULL);
        /* Self: cancelling from its own callback does nothing. */
        pending++;
        self_req = pl_db_history(db, s, len, UINT64_MAX, 10, on_self_cancel, NULL);
        t1 = evtimer_new(base, on_cancel_running, NULL);
        t2 = evtimer_new(base, on_cancel_after, NULL);
        event_add(t1, &(struct timeval){0, 100 * 1000});
        event_add(t2, &(struct timeval){0, 600 * 1000});
    } else if (strcmp(cmd, "free") == 0 && nargs == 1 && (s = arg_bytes(args[0], &len))) {
        static const char sleep_sql[] = "SELECT SLEEP(0.5)";
        pl_db_exec(db, sleep_sql, sizeof(sleep_sql) - 1, on_free_exec, NULL);
        pl_db_exec(db, sleep_sql, sizeof(sleep_sql) - 1, on_free_exec, NULL);
        for (int i = 0; i < 5; i++)
            free_victim = pl_db_history(db, s, len, UINT64_MAX, 10, on_free_history, NULL);
        t1 = evtimer_new(base, on_free_now, NULL);
        t2 = evtimer_new(base, on_free_done, NULL);
        event_add(t1, &(struct timeval){0, 200 * 1000});
        event_add(t2, &(struct timeval){0, 900 * 1000});
    } else if (strcmp(cmd, "repl") == 0 && nargs == 0) {
        repl = 1;
        ev_in = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, NULL);
        event_add(ev_in, NULL);
    } else {
        free(s);
        pl_db_free(db);
        event_free(ticker);
        event_free(watchdog);
        event_base_free(base);
        return usage();
    }
    if (strcmp(cmd, "repl") != 0)
        event_add(watchdog, &wd);
    if (strcmp(cmd, "timer") == 0 && s == NULL) {
        rc = usage();
    } else {
        event_base_dispatch(base);
        rc = failures || unwanted ? 1 : 0;
    }

    if (strcmp(cmd, "concurrent") == 0) {
        printf("{\"op\":\"concurrent\",\"status\":\"%s\",\"ok\":%d,\"failed\":%d,\"rows\":%ld,",
               conc_failed == 0 && failures == 0 ? "ok" : "fail", conc_ok, conc_failed, conc_rows);
        print_stats();
        printf("}\n");
        if (conc_failed)
            rc = 1;
    } else if (strcmp(cmd, "cancel") == 0) {
        printf("{\"op\":\"cancel\",\"status\":\"%s\",\"unwanted\":%d,",
               unwanted == 0 && failures == 0 ? "ok" : "fail", unwanted);
        print_stats();
        printf("}\n");
    } else if (strcmp(cmd, "free") == 0) {
        /* 2 running + 5 queued - 1 cancelled + 1 submitted during the free */
        if (closed_calls != 7)
            failures++;
        printf("{\"op\":\"free\",\"status\":\"%s\",\"unwanted\":%d,\"closed\":%d}\n",
               unwanted || failures ? "fail" : "ok", unwanted, closed_calls);
    } else if (strcmp(cmd, "repl") == 0 && stdin_eof) {
        printf("{\"op\":\"eof\",\"pending\":%d}\n", pending);
    }
    fflush(stdout);

    pl_db_free(db);
    free(s);
    if (ev_in)
        event_free(ev_in);
    if (t1)
        event_free(t1);
    if (t2)
        event_free(t2);
    event_free(ticker);
    event_free(watchdog);
    event_base_free(base);
    return rc;
}
