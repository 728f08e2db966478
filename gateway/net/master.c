/*
 * The master process (see master.h). It never serves clients and has no
 * event loop: the signals it cares about stay blocked except inside
 * sigsuspend(), whose handlers only set sig_atomic_t flags; the loop then
 * reaps, respawns, reloads or shuts down. Timed work (respawn backoff, the
 * SIGKILL deadline at shutdown) uses setitimer(ITIMER_REAL).
 *
 * Listening sockets: one per worker slot, all bound to the same address
 * with SO_REUSEPORT so the kernel spreads connections over the slots. A
 * worker replaced on reload, or one that died and is respawned at once,
 * leaves its socket (and the connections queued on it) to its successor,
 * so the port never closes. But a slot whose worker waits out a respawn
 * backoff must not keep its socket: the kernel would go on routing a
 * share of new connections to a queue nobody accepts from, and they would
 * hang until the respawn (3 of 20 did, with a 1 s backoff). So the master
 * closes the dead slot's socket when it schedules a delayed respawn (the
 * connections already queued there are reset; with the sysctl
 * net.ipv4.tcp_migrate_req=1 the kernel moves them to a live socket
 * instead) and binds a fresh one to the same address just before forking
 * the replacement. Closing and rebinding was chosen over a reuseport BPF
 * program that skips dead slots: it needs no BPF privileges or map
 * upkeep, and the group only changes on a crash.
 *
 * Configuration faults: a worker that exits PL_WORKER_EXIT_CONFIG cannot
 * run with this configuration, so respawning it would only loop; the
 * master logs it once, stops the other workers and exits 2, the status of
 * a bad config found before forking.
 *
 * Per-address counts (iplimit.h) live in a shared table mapped here
 * before forking when max_connections_per_ip is on; a dead worker's
 * column is zeroed on reap, like its metrics gauges.
 *
 * Modules: the setup function (main.c) fills the path -> module table
 * (ops.h) for the running config before the first fork and again after
 * each reload, before the new workers fork: a worker inherits the table
 * of the config it runs with, an old one keeps its own.
 */
#include "master.h"
#include "config.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "net_private.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define QUICK_DEATH_MS 5000 /* a worker dying sooner than this backs off */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define KILL_GRACE_MS 2000 /* after drain_timeout, before SIGKILL */

struct slot {
    int fd;              /* listening socket; -1 while a delayed respawn waits (see above) */
    pid_t pid;           /* current worker, 0 while waiting to respawn */
    int block;           /* metrics block the current worker writes */
    uint64_t started_ms; /* monotonic start of the current worker */
    uint64_t respawn_ms; /* when pid == 0: monotonic time to fork again */
    int64_t backoff_ms;  /* last delay used; doubles on quick deaths */
};

/* A replaced worker still draining after a reload. */
struct old {
    pid_t pid;
    int slot;
    int block;
};

static volatile sig_atomic_t got_chld, got_term, got_hup, got_alrm;

static pl_gw_config_t *cfg;
static const char *cfg_file;
static int cfg_argc;
static char **cfg_argv;
static pl_master_setup_fn *setup;
static struct slot *slots;
static int nslots;
static struct old *olds;
static int nolds, olds_cap;
static int exiting;
static int fatal; /* a worker exited PL_WORKER_EXIT_CONFIG: exit 2 once all are gone */
static struct sockaddr_storage bound; /* the address every slot's socket binds */
static socklen_t bound_len;
static uint64_t kill_at_ms;
static int killed;

static void on_signal(int sig)
{
    switch (sig) {
    case SIGCHLD:
        got_chld = 1;
        break;
    case SIGTERM:
    case SIGINT:
        got_term = 1;
        break;
    case SIGHUP:
        got_hup = 1;
        break;
    case SIGALRM:
        got_alrm = 1;
        break;
    }
}

/* ---- listening sockets ---- */

static int split_listen(const char *listen, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL)
        return -1;
    size_t hlen = (size_t)(colon - listen);
    const char *h = listen;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= hcap || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    if (strcmp(host, "*") == 0)
        host[0] = '\0';
    return 0;
}

/* One listening socket on the bound address, joined to the others'
 * SO_REUSEPORT group. Returns the fd, or -1 (logged). */
static int open_one(void)
{
    int fd = socket(bound.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        pl_log_error("socket() failed: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        pl_log_error("setsockopt(SO_REUSEPORT) failed: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&bound, bound_len) < 0) {
        pl_log_error("bind() failed: %s\tlisten=%s", strerror(errno), cfg->listen);
        close(fd);
        return -1;
    }
    if (listen(fd, 4096) < 0) {
        pl_log_error("listen() failed: %s\tlisten=%s", strerror(errno), cfg->listen);
        close(fd);
        return -1;
    }
    return fd;
}

/* Binds nslots sockets to cfg->listen; returns 0 or -1 (logged). */
static int open_sockets(void)
{
    char host[256], port[16];
    if (split_listen(cfg->listen, host, sizeof(host), port, sizeof(port)) < 0) {
        pl_log_error("bad listen address\tlisten=%s", cfg->listen);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        pl_log_error("getaddrinfo() failed: %s\tlisten=%s", gai_strerror(rc), cfg->listen);
        return -1;
    }
    struct sockaddr_storage addr;
    socklen_t alen = ai->ai_addrlen;
    memcpy(&addr, ai->ai_addr, alen);
    freeaddrinfo(ai);
    memcpy(&bound, &addr, alen);
    bound_len = alen;
    for (int i = 0; i < nslots; i++) {
        int fd = open_one();
        if (fd < 0)
            return -1;
        if (i == 0) { /* port 0: the others must share the port the kernel picked */
            bound_len = sizeof(bound);
            getsockname(fd, (struct sockaddr *)&bound, &bound_len);
        }
        slots[i].fd = fd;
    }
    int p = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    pl_log_info("listening\tlisten=%s port=%d sockets=%d", cfg->listen, p, nslots);
    return 0;
}

/* ---- workers ---- */

static int block_in_use(int b)
{
    for (int i = 0; i < nslots; i++)
        if (slots[i].pid > 0 && slots[i].block == b)
            return 1;
    for (int i = 0; i < nolds; i++)
        if (olds[i].block == b)
            return 1;
    return 0;
}

static void spawn(int i)
{
    struct slot *s = &slots[i];
    if (s->fd < 0 && (s->fd = open_one()) < 0) {
        s->pid = 0;
        s->respawn_ms = pl_mono_ms() + BACKOFF_MIN_MS;
        return;
    }
    int block = i;
    for (int k = 0; k < PL_METRICS_BLOCKS_PER_SLOT; k++) {
        if (!block_in_use(i + k * nslots)) {
            block = i + k * nslots;
            break;
        }
    }
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        pl_log_error("fork() failed: %s\tslot=%d", strerror(errno), i);
        s->pid = 0;
        s->respawn_ms = pl_mono_ms() + BACKOFF_MIN_MS;
        return;
    }
    if (pid == 0) {
        /* child: default signal dispositions, nothing blocked */
        struct sigaction sa = {.sa_handler = SIG_DFL};
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval none = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &none, NULL);
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        /* If the master dies without stopping us, drain and exit. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            raise(SIGTERM);
        for (int j = 0; j < nslots; j++)
            if (j != i)
                close(slots[j].fd);
        pl_log_init("gateway", i);
        pl_iplimit_attach(block);
        int status = pl_worker_run(cfg, i, s->fd, pl_metrics_block(block));
        _exit(status);
    }
    s->pid = pid;
    s->block = block;
    s->started_ms = pl_mono_ms();
    s->respawn_ms = 0;
    pl_log_info("worker started\tslot=%d pid=%d", i, (int)pid);
}

static void describe(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit_status=%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal=%d signal_name=\"%s\"%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? " core_dumped=true" : "");
    else
        snprintf(out, cap, "status=0x%x", status);
}

static void start_exit(void);
static int setup_limits(void);

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        char how[128];
        describe(status, how, sizeof(how));
        uint64_t now = pl_mono_ms();
        int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        int found = 0;
        for (int i = 0; i < nslots && !found; i++) {
            struct slot *s = &slots[i];
            if (s->pid != pid)
                continue;
            found = 1;
            uint64_t up = now - s->started_ms;
            pl_metrics_reset_gauges(s->block);
            pl_iplimit_reset_block(s->block);
            s->pid = 0;
            if (!exiting && WIFEXITED(status) && WEXITSTATUS(status) == PL_WORKER_EXIT_CONFIG) {
                pl_log_error("worker cannot run with this configuration: stopping the gateway "
                             "(see the worker's error above)\tslot=%d pid=%d %s",
                             i, (int)pid, how);
                fatal = 1;
                start_exit();
                continue;
            }
            if (exiting) {
                if (clean)
                    pl_log_info("worker exited\tslot=%d pid=%d %s", i, (int)pid, how);
                else
                    pl_log_warn("worker exited\tslot=%d pid=%d %s", i, (int)pid, how);
                continue;
            }
            if (up < QUICK_DEATH_MS) {
                s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
                if (s->backoff_ms > BACKOFF_MAX_MS)
                    s->backoff_ms = BACKOFF_MAX_MS;
            } else {
                s->backoff_ms = 0;
            }
            s->respawn_ms = now + (uint64_t)s->backoff_ms;
            if (s->backoff_ms > 0) { /* nobody may accept for it meanwhile (see above) */
                close(s->fd);
                s->fd = -1;
            }
            pl_log_error("worker died\tslot=%d pid=%d %s uptime_ms=%llu respawn_in_ms=%lld", i,
                         (int)pid, how, (unsigned long long)up, (long long)s->backoff_ms);
        }
        for (int k = 0; k < nolds && !found; k++) {
            if (olds[k].pid != pid)
                continue;
            found = 1;
            pl_metrics_reset_gauges(olds[k].block);
            pl_iplimit_reset_block(olds[k].block);
            pl_log_info("replaced worker exited\tslot=%d pid=%d %s", olds[k].slot, (int)pid, how);
            olds[k] = olds[--nolds];
        }
        if (!found)
            pl_log_warn("unknown child exited\tpid=%d %s", (int)pid, how);
    }
}

static int children(void)
{
    int n = nolds;
    for (int i = 0; i < nslots; i++)
        n += slots[i].pid > 0;
    return n;
}

static void signal_all(int sig)
{
    for (int i = 0; i < nslots; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
    for (int k = 0; k < nolds; k++)
        kill(olds[k].pid, sig);
}

static void start_exit(void)
{
    exiting = 1;
    kill_at_ms = pl_mono_ms() + (uint64_t)cfg->drain_timeout + KILL_GRACE_MS;
    pl_log_info("shutting down\tworkers=%d drain_timeout_ms=%lld", children(),
                (long long)cfg->drain_timeout);
    signal_all(SIGTERM);
}

static void reload(void)
{
    pl_gw_config_t *nc = pl_xcalloc(1, sizeof(*nc));
    char err[512];
    if (pl_gw_config_load(nc, cfg_file, cfg_argc, cfg_argv, err, sizeof(err)) < 0) {
        pl_log_error("reload failed, keeping the running config\terror=\"%s\"", err);
        pl_config_free(pl_gw_options, nc);
        free(nc);
        return;
    }
    if (strcmp(nc->listen, cfg->listen) != 0) {
        pl_log_warn("listen changed: needs a restart, keeping the old address\told=%s new=%s",
                    cfg->listen, nc->listen);
        free(nc->listen);
        nc->listen = pl_xstrdup(cfg->listen);
    }
    if (nc->workers != cfg->workers) {
        pl_log_warn("workers changed: needs a restart, keeping the old count\told=%lld new=%lld",
                    (long long)cfg->workers, (long long)nc->workers);
        nc->workers = cfg->workers;
    }
    pl_config_free(pl_gw_options, cfg);
    free(cfg);
    cfg = nc;
    pl_log_level = pl_log_level_parse(cfg->log_level);
    setup(cfg);
    if (setup_limits() < 0)
        pl_log_error("max_connections_per_ip: no table, the limit stays off");
    pl_log_info("reloading: replacing workers one by one\tworkers=%d", nslots);
    for (int i = 0; i < nslots; i++) {
        struct slot *s = &slots[i];
        pid_t old = s->pid;
        if (old > 0) {
            if (nolds == olds_cap) {
                olds_cap = olds_cap ? olds_cap * 2 : 8;
                olds = pl_xrealloc(olds, (size_t)olds_cap * sizeof(*olds));
            }
            olds[nolds++] = (struct old){.pid = old, .slot = i, .block = s->block};
        }
        s->backoff_ms = 0;
        spawn(i); /* new worker first: it shares the socket with the old one */
        if (old > 0)
            kill(old, SIGTERM);
    }
}

/* Arms SIGALRM for the nearest respawn or the shutdown deadline. */
static void arm_timer(uint64_t now)
{
    uint64_t next = 0;
    if (exiting && !killed)
        next = kill_at_ms;
    if (!exiting)
        for (int i = 0; i < nslots; i++)
            if (slots[i].pid == 0 && (next == 0 || slots[i].respawn_ms < next))
                next = slots[i].respawn_ms;
    struct itimerval it = {{0, 0}, {0, 0}};
    if (next != 0) {
        uint64_t ms = next > now ? next - now : 1;
        it.it_value.tv_sec = (time_t)(ms / 1000);
        it.it_value.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

/* What the limits come to for cfg: logs max_connections in effect, and
 * maps the per-address table when max_connections_per_ip is on. Returns
 * 0, or -1 (logged) if the table cannot be mapped. */
static int setup_limits(void)
{
    size_t reserve;
    size_t max = pl_worker_max_conns(cfg, &reserve);
    if (cfg->max_connections > 0 && (size_t)cfg->max_connections > max)
        pl_log_warn("max_connections is above what the open-file limit allows: lowered\t"
                    "configured=%lld max_connections=%zu fd_reserve=%zu",
                    (long long)cfg->max_connections, max, reserve);
    else
        pl_log_info("limits\tmax_connections=%zu fd_reserve=%zu max_connections_per_ip=%lld", max,
                    reserve, (long long)cfg->max_connections_per_ip);
    if (cfg->max_connections_per_ip > 0)
        return pl_iplimit_create(2 * (size_t)nslots * max, PL_METRICS_BLOCKS_PER_SLOT * nslots);
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            pl_log_warn("setrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
    }
}

int pl_master_run(pl_gw_config_t *initial, const char *file, int argc, char **argv,
                  pl_master_setup_fn *setup_fn)
{
    cfg = pl_xmalloc(sizeof(*cfg));
    *cfg = *initial;
    cfg_file = file;
    cfg_argc = argc;
    cfg_argv = argv;
    setup = setup_fn;
    nslots = cfg->workers > 0 ? (int)cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nslots < 1)
        nslots = 1;
    raise_nofile();

    sigset_t mask, empty;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGALRM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sigemptyset(&empty);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    slots = pl_xcalloc((size_t)nslots, sizeof(*slots));
    if (open_sockets() < 0 || pl_metrics_create(nslots) < 0 || setup_limits() < 0) {
        pl_config_free(pl_gw_options, cfg);
        free(cfg);
        free(slots);
        return 1;
    }
    pl_log_info("master started\tworkers=%d", nslots);
    setup(cfg);
    for (int i = 0; i < nslots; i++)
        spawn(i);

    for (;;) {
        if (got_chld) {
            got_chld = 0;
            reap();
        }
        if (got_term) {
            got_term = 0;
            if (!exiting)
                start_exit();
        }
        if (got_hup) {
            got_hup = 0;
            if (!exiting)
                reload();
        }
        got_alrm = 0;
        uint64_t now = pl_mono_ms();
        if (exiting) {
            if (children() == 0)
                break;
            if (!killed && now >= kill_at_ms) {
                pl_log_warn("workers did not exit in time: sending SIGKILL\tleft=%d", children());
                signal_all(SIGKILL);
                killed = 1;
            }
        } else {
            for (int i = 0; i < nslots; i++)
                if (slots[i].pid == 0 && slots[i].respawn_ms <= now)
                    spawn(i);
        }
        arm_timer(now);
        if (!got_chld && !got_term && !got_hup)
            sigsuspend(&empty);
    }
    for (int i = 0; i < nslots; i++)
        if (slots[i].fd >= 0)
            close(slots[i].fd);
    pl_log_info("master exiting%s", fatal ? "\texit_status=2 reason=configuration" : "");
    pl_config_free(pl_gw_options, cfg);
    free(cfg);
    free(slots);
    free(olds);
    pl_ops_clear();
    return fatal ? PL_WORKER_EXIT_CONFIG : 0;
}
