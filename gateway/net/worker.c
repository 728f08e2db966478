/*
 * A worker process (see worker.h): one libevent loop serving the listening
 * socket of its slot. Accepts with accept4 in a loop, owns the list of
 * connections, frees CLOSED ones at the end of each loop pass, and drains
 * on SIGTERM: stop accepting, close every WebSocket with 1001, exit when
 * none is left or at drain_timeout.
 *
 * "End of the loop pass": closing a connection activates ev_free, which
 * libevent appends to the tail of the active queue, so it runs after every
 * callback that was already pending, as a top-level callback: no caller up
 * the stack can still hold a freed pointer. It shares the default priority
 * on purpose: a lower priority would starve while the loop stays busy.
 *
 * Heap trimming: a big fan-out (presence joins of a thousand members, a
 * burst to a large room) queues tens of MB in small evbuffer chains, one
 * set per recipient, interleaved with long-lived allocations (sessions,
 * room index). Once written they are free, but glibc keeps the pages (its
 * own trimming only returns the top of the heap), so RSS stayed at the
 * peak while everyone idled. ev_trim looks every second and calls
 * malloc_trim(0), which also returns free pages inside the heap, once the
 * output queued across the worker has dropped to near nothing after a
 * large peak (or after TRIM_MIN_CLOSED connections went away: their
 * structs and sessions leave holes too) and stayed there for a tick; at
 * most every TRIM_SPACING_MS.
 *
 * Limits (docs/ops.md "Limits"): at most max_connections open, and always
 * FD_RESERVE_BASE + 2 * mysql_pool descriptors left for what the worker
 * opens itself (the Redis links and their reconnects, the MySQL pool,
 * libevent's own, a log file), so a Redis or MySQL reconnect never meets
 * EMFILE however many clients wait. A client over a limit is refused
 * right after accept(), before any per-connection state exists: its
 * request (if already there) is read and dropped, a fixed 503/429 is
 * written and the socket closed. In case something else uses up the
 * descriptors anyway, a spare one (/dev/null) is kept open: on EMFILE it
 * is closed, the waiting client is accepted, refused the same way, and the
 * spare reopened (the libevent/nginx trick), instead of leaving the
 * client in the queue and the listening socket readable forever.
 */
#include "worker.h"
#include "addr.h"
#include "conn.h"
#include "http.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "net_private.h"
#include "util.h"
#include "ws.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SCRATCH_SIZE (64 * 1024)
#define ACCEPT_BATCH 256 /* accepts per callback, so reads are not starved */
#define TRIM_TICK_MS 1000
#define TRIM_MIN_PEAK (1u << 20)    /* queued bytes worth a trim once they are gone */
#define TRIM_IDLE_BYTES (64u << 10) /* "near nothing": at most this much queued in a tick */
#define TRIM_MIN_CLOSED 1024        /* fewer open connections than at the peak by this many */
#define TRIM_SPACING_MS 5000
/* Descriptors a worker keeps for itself beyond the MySQL pool: stdio (3),
 * the listening socket, the spare, libevent's epoll and signal pair (3),
 * two Redis links plus the two a reconnect opens before the old ones are
 * freed, a log file, and room for what libraries open (DNS, /dev/urandom). */
#define FD_RESERVE_BASE 32
#define REFUSAL_LOGS_PER_SEC 20 /* refusal lines per second, the rest summed up */

struct pl_worker_private {
    int listen_fd;                /* -1 when none (closed on drain, or a test harness) */
    struct event ev_accept;       /* EV_READ|EV_PERSIST on listen_fd until draining */
    struct event ev_accept_retry; /* re-enables accept after EMFILE and friends */
    struct event ev_term;         /* SIGTERM as an event */
    struct event ev_free;         /* activated on close: frees the closed list */
    struct event ev_drain;        /* drain_timeout */
    struct event ev_trim;         /* every TRIM_TICK_MS: malloc_trim after big queues */
    struct pl_conn_list open;     /* conns not yet CLOSED */
    struct pl_conn_list closed;   /* CLOSED, freed by on_free */
    size_t nopen;
    uint64_t next_id;
    uint8_t *scratch;
    uint64_t last_emfile_log_ms;
    size_t trim_peak;       /* most output queued since the last trim */
    size_t nopen_peak;      /* most open connections since the last trim */
    int trim_quiet;         /* consecutive ticks with the queue near empty throughout */
    uint64_t last_trim_ms;  /* monotonic time of the last malloc_trim */
    size_t max_conns;       /* max_connections in effect (pl_worker_max_conns) */
    int spare_fd;           /* /dev/null, given up on EMFILE to refuse one client; -1 if none */
    pl_cidr_list_t trusted; /* trusted_proxies, parsed */
    uint64_t refusal_sec;   /* second of the refusal log budget */
    unsigned refusal_logs;  /* refusal lines written in refusal_sec */
    unsigned refusal_quiet; /* refusals not logged since the last line */
};

size_t pl_worker_max_conns(const pl_gw_config_t *cfg, size_t *reserve_out)
{
    struct rlimit rl;
    size_t nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = (size_t)rl.rlim_cur;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        nofile = 1u << 20;
    size_t reserve = FD_RESERVE_BASE + 2 * (size_t)cfg->mysql_pool;
    if (reserve_out)
        *reserve_out = reserve;
    size_t room = nofile > reserve ? nofile - reserve : 1;
    if (cfg->max_connections > 0 && (size_t)cfg->max_connections < room)
        return (size_t)cfg->max_connections;
    return room;
}

const pl_cidr_list_t *pl_worker_trusted(const pl_worker_t *w)
{
    return &w->priv->trusted;
}

int pl_worker_refusal_log(pl_worker_t *w, unsigned *suppressed)
{
    struct pl_worker_private *p = w->priv;
    uint64_t sec = pl_mono_ms() / 1000;
    if (sec != p->refusal_sec) {
        p->refusal_sec = sec;
        p->refusal_logs = 0;
    }
    if (p->refusal_logs >= REFUSAL_LOGS_PER_SEC) {
        p->refusal_quiet++;
        return 0;
    }
    p->refusal_logs++;
    *suppressed = p->refusal_quiet;
    p->refusal_quiet = 0;
    return 1;
}

/* Refuses a just-accepted client without a connection struct: reads what
 * it already sent (so close() sends a FIN, not an RST that could destroy
 * the reply), writes a fixed response, closes. */
static void refuse(pl_worker_t *w, int fd, const struct sockaddr *sa, enum pl_limit limit)
{
    size_t cap;
    uint8_t *scratch = pl_worker_scratch(w, &cap);
    (void)!recv(fd, scratch, cap, MSG_DONTWAIT);
    int status = limit == PL_LIMIT_MAX_CONNECTIONS_PER_IP ? 429 : 503;
    const char *body = status == 429 ? "too many connections from your address\n"
                                     : "server busy: too many connections\n";
    char head[512];
    size_t hlen =
        pl_http_head(head, sizeof(head), status, "text/plain", strlen(body), "Retry-After: 5\r\n");
    struct iovec iov[2] = {{head, hlen}, {(void *)body, strlen(body)}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    (void)!sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
    pl_metrics_limit(w->metrics, limit);
    unsigned suppressed;
    if (pl_worker_refusal_log(w, &suppressed)) {
        pl_addr_t a;
        char host[PL_ADDR_STRLEN] = "?", peer[PL_ADDR_STRLEN + 8];
        int port = sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                                             : ntohs(((const struct sockaddr_in *)sa)->sin_port);
        if (pl_addr_from_sockaddr(sa, &a) == 0)
            pl_addr_format(&a, host);
        snprintf(peer, sizeof(peer), "%s:%d", host, port); /* as pl_conn_log shows it */
        pl_log_info("connection refused: limit reached\tlimit=%s status=%d open=%zu "
                    "max_connections=%zu peer=%s%s%.0u",
                    pl_metrics_limit_name(limit), status, w->priv->nopen, w->priv->max_conns, peer,
                    suppressed ? " suppressed=" : "", suppressed);
    }
}

/* The spare descriptor: given up to accept and refuse one client on
 * EMFILE/ENFILE. Returns 1 if that was done (the caller goes on). */
static int refuse_with_spare(pl_worker_t *w, int lfd)
{
    struct pl_worker_private *p = w->priv;
    if (p->spare_fd < 0)
        return 0;
    close(p->spare_fd);
    p->spare_fd = -1;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    int fd = accept4(lfd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        refuse(w, fd, (struct sockaddr *)&ss, PL_LIMIT_OPEN_FILES);
    p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

void pl_worker_conn_add(pl_worker_t *w, pl_conn_t *c)
{
    pl_conn_list_add(&w->priv->open, c);
    if (++w->priv->nopen > w->priv->nopen_peak)
        w->priv->nopen_peak = w->priv->nopen;
}

void pl_worker_conn_closed(pl_worker_t *w, pl_conn_t *c)
{
    pl_conn_list_del(c);
    w->priv->nopen--;
    pl_conn_list_add(&w->priv->closed, c);
    event_active(&w->priv->ev_free, EV_TIMEOUT, 0);
}

uint8_t *pl_worker_scratch(pl_worker_t *w, size_t *cap)
{
    *cap = SCRATCH_SIZE;
    return w->priv->scratch;
}

uint64_t pl_worker_next_id(pl_worker_t *w)
{
    return ++w->priv->next_id;
}

size_t pl_worker_nopen(const pl_worker_t *w)
{
    return w->priv->nopen;
}

static void free_closed(pl_worker_t *w)
{
    pl_conn_t *c;
    while ((c = LIST_FIRST(&w->priv->closed)) != NULL) {
        pl_conn_list_del(c);
        pl_conn_free(c);
    }
}

static void on_free(evutil_socket_t fd, short what, void *arg)
{
    pl_worker_t *w = arg;
    free_closed(w);
    if (w->draining && w->priv->nopen == 0) {
        pl_log_info("drained: all connections closed");
        event_base_loopexit(w->base, NULL);
    }
}

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    pl_worker_t *w = arg;
    struct pl_worker_private *p = w->priv;
    size_t now, peak;
    pl_conn_queued(&now, &peak);
    if (peak > p->trim_peak)
        p->trim_peak = peak;
    int worth = p->trim_peak >= TRIM_MIN_PEAK || p->nopen_peak - p->nopen >= TRIM_MIN_CLOSED;
    if (!worth || peak > TRIM_IDLE_BYTES) {
        p->trim_quiet = 0; /* nothing worth it, or still busy writing */
        return;
    }
    uint64_t ms = pl_mono_ms();
    if (++p->trim_quiet < 2 || ms - p->last_trim_ms < TRIM_SPACING_MS)
        return;
    int released = malloc_trim(0);
    pl_log_debug("heap trimmed\tpeak_queued=%zu peak_open=%zu open=%zu released=%d took_ms=%llu",
                 p->trim_peak, p->nopen_peak, p->nopen, released,
                 (unsigned long long)(pl_mono_ms() - ms));
    p->trim_peak = now;
    p->nopen_peak = p->nopen;
    p->trim_quiet = 0;
    p->last_trim_ms = pl_mono_ms();
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    pl_worker_t *w = arg;
    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && refuse_with_spare(w, lfd))
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors (and no spare): pause accepting
                 * briefly instead of spinning on a readable listening
                 * socket. */
                uint64_t now = pl_mono_ms();
                if (now - w->priv->last_emfile_log_ms > 1000) {
                    pl_log_warn("accept() failed: %s\topen=%zu", strerror(errno), w->priv->nopen);
                    w->priv->last_emfile_log_ms = now;
                }
                event_del(&w->priv->ev_accept);
                struct timeval tv = {0, 100 * 1000};
                event_add(&w->priv->ev_accept_retry, &tv);
                return;
            }
            pl_log_error("accept() failed: %s", strerror(errno));
            return;
        }
        if (w->priv->nopen >= w->priv->max_conns) {
            refuse(w, fd, (struct sockaddr *)&ss, PL_LIMIT_MAX_CONNECTIONS);
            continue;
        }
        /* The per-address count: now for a direct client; for a trusted
         * proxy once its request names the client (conn.c). */
        unsigned flags = 0;
        pl_addr_t a;
        if (pl_addr_from_sockaddr((struct sockaddr *)&ss, &a) == 0) {
            if (pl_cidr_list_match(&w->priv->trusted, &a)) {
                flags |= PL_CONN_PROXIED;
            } else if (w->cfg->max_connections_per_ip > 0) {
                enum pl_iplimit_result r =
                    pl_iplimit_acquire(&a, (unsigned)w->cfg->max_connections_per_ip);
                if (r == PL_IPLIMIT_OVER) {
                    refuse(w, fd, (struct sockaddr *)&ss, PL_LIMIT_MAX_CONNECTIONS_PER_IP);
                    continue;
                }
                if (r == PL_IPLIMIT_OK)
                    flags |= PL_CONN_IP_HELD;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pl_conn_new(w, fd, (struct sockaddr *)&ss, flags);
    }
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    pl_worker_t *w = arg;
    if (!w->draining)
        event_add(&w->priv->ev_accept, NULL);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    pl_worker_t *w = arg;
    pl_log_warn("drain timeout: dropping the remaining connections\tleft=%zu", w->priv->nopen);
    while (!LIST_EMPTY(&w->priv->open))
        pl_conn_abort(LIST_FIRST(&w->priv->open), "drain timeout");
    event_base_loopexit(w->base, NULL);
}

void pl_worker_drain(pl_worker_t *w)
{
    if (w->draining)
        return;
    pl_log_info("draining\topen=%zu timeout_ms=%lld", w->priv->nopen,
                (long long)w->cfg->drain_timeout);
    w->draining = 1;
    event_del(&w->priv->ev_accept);
    event_del(&w->priv->ev_accept_retry);
    /* Our copy only: the master keeps the socket (and its queue) open for
     * the worker that replaces us. */
    if (w->priv->listen_fd >= 0)
        close(w->priv->listen_fd);
    w->priv->listen_fd = -1;
    pl_ops_worker_drain(w);
    pl_conn_t *c = LIST_FIRST(&w->priv->open), *next;
    for (; c != NULL; c = next) {
        next = pl_conn_list_next(c); /* go_away may move c to the closed list */
        pl_conn_go_away(c);
    }
    struct timeval tv = {w->cfg->drain_timeout / 1000, (w->cfg->drain_timeout % 1000) * 1000};
    event_add(&w->priv->ev_drain, &tv);
    event_active(&w->priv->ev_free, EV_TIMEOUT, 0); /* exits at once if nothing is open */
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    pl_worker_drain(arg);
}

int pl_worker_init(pl_worker_t *w, const pl_gw_config_t *cfg, int index, int listen_fd,
                   pl_metrics_t *metrics)
{
    static char host[256];
    struct pl_worker_private *priv = pl_xcalloc(1, sizeof(*priv));
    LIST_INIT(&priv->open);
    LIST_INIT(&priv->closed);
    *w = (pl_worker_t){.cfg = cfg, .index = index, .metrics = metrics, .priv = priv};
    if (cfg->node_id && *cfg->node_id) {
        w->node_id = cfg->node_id;
    } else {
        if (gethostname(host, sizeof(host) - 1) < 0)
            strcpy(host, "localhost");
        w->node_id = host;
    }
    priv->listen_fd = listen_fd;
    priv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    priv->max_conns = pl_worker_max_conns(cfg, NULL);
    w->max_conns = priv->max_conns;
    char err[256];
    if (pl_cidr_list_parse(cfg->trusted_proxies, &priv->trusted, err, sizeof(err)) < 0)
        pl_log_error("trusted_proxies: %s", err); /* checked at load: not reached */
    w->base = event_base_new();
    if (w->base == NULL) {
        pl_log_error("event_base_new() failed");
        if (priv->spare_fd >= 0)
            close(priv->spare_fd);
        pl_cidr_list_free(&priv->trusted);
        free(priv);
        w->priv = NULL;
        return -1;
    }
    priv->scratch = pl_xmalloc(SCRATCH_SIZE);
    event_assign(&priv->ev_accept, w->base, listen_fd, EV_READ | EV_PERSIST, on_accept, w);
    event_assign(&priv->ev_accept_retry, w->base, -1, 0, on_accept_retry, w);
    event_assign(&priv->ev_term, w->base, SIGTERM, EV_SIGNAL | EV_PERSIST, on_term, w);
    event_assign(&priv->ev_free, w->base, -1, 0, on_free, w);
    event_assign(&priv->ev_drain, w->base, -1, 0, on_drain_timeout, w);
    event_assign(&priv->ev_trim, w->base, -1, EV_PERSIST, on_trim, w);
    struct timeval trim_tv = {TRIM_TICK_MS / 1000, (TRIM_TICK_MS % 1000) * 1000};
    event_add(&priv->ev_trim, &trim_tv);
    return 0;
}

void pl_worker_fini(pl_worker_t *w)
{
    struct pl_worker_private *priv = w->priv;
    while (!LIST_EMPTY(&priv->open))
        pl_conn_abort(LIST_FIRST(&priv->open), "worker stopping");
    free_closed(w);
    event_del(&priv->ev_term);
    event_del(&priv->ev_accept);
    event_del(&priv->ev_accept_retry);
    event_del(&priv->ev_drain);
    event_del(&priv->ev_free);
    event_del(&priv->ev_trim);
    event_base_free(w->base);
    w->base = NULL;
    free(priv->scratch);
    if (priv->listen_fd >= 0)
        close(priv->listen_fd);
    if (priv->spare_fd >= 0)
        close(priv->spare_fd);
    pl_cidr_list_free(&priv->trusted);
    free(priv);
    w->priv = NULL;
}

int pl_worker_run(const pl_gw_config_t *cfg, int index, int listen_fd, pl_metrics_t *metrics)
{
    pl_worker_t w;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C reaches the master, which sends SIGTERM */
    signal(SIGHUP, SIG_IGN);

    if (pl_worker_init(&w, cfg, index, listen_fd, metrics) < 0)
        return 1;
    event_add(&w.priv->ev_term, NULL);

    if (pl_ops_worker_start(&w) < 0) {
        /* a module that cannot start cannot with this config either:
         * the master must not respawn us in a loop (worker.h) */
        pl_worker_fini(&w);
        return PL_WORKER_EXIT_CONFIG;
    }
    /* The first SHA-1 (handshake accept key) initialises OpenSSL's
     * provider and method tables and touches ~2.5 MB of libcrypto. Pay
     * that here, once per worker, rather than in the first client's
     * handshake latency (and in the memory growth attributed to the
     * first connections). */
    char warm[29];
    pl_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, warm);
    event_add(&w.priv->ev_accept, NULL);
    pl_log_info("worker started\tnode=%s max_connections=%zu", w.node_id, w.priv->max_conns);

    event_base_dispatch(w.base);

    /* every connection CLOSED (closed hooks run) before the modules stop */
    while (!LIST_EMPTY(&w.priv->open))
        pl_conn_abort(LIST_FIRST(&w.priv->open), "worker stopping");
    free_closed(&w);
    pl_ops_worker_stop(&w);
    pl_worker_fini(&w);
    pl_log_info("worker exiting");
    return 0;
}
