/*
 * Logging: one logfmt line per event on stderr:
 *   ts=2026-11-25T20:10:00.123Z level=info pid=42 worker=0 msg="..." k=v ...
 *
 * The format string's text up to the first tab is the message (quoted and
 * escaped); whatever follows the tab is appended as raw logfmt fields:
 *   pl_log_info("worker exited\tslot=%d status=%s", slot, why);
 */
#ifndef PL_LOG_H
#define PL_LOG_H

enum pl_log_level {
    PL_LOG_ERROR, /* something failed that ops must look at */
    PL_LOG_WARN,  /* degraded but handled (client misbehaviour, retries) */
    PL_LOG_INFO,  /* lifecycle: start, stop, reload, worker exits */
    PL_LOG_DEBUG, /* per connection / per message detail */
};

extern int pl_log_level;

/* Sets the program name (app=) and worker index (-1 for a master or a
 * single-process program) that prefix every line. */
void pl_log_init(const char *app, int worker);
/* Parses "error", "warn", "info", "debug"; returns the level or -1. */
int pl_log_level_parse(const char *name);

void pl_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pl_log_error(...) pl_log_write(PL_LOG_ERROR, __VA_ARGS__)
#define pl_log_warn(...)                                                                           \
    do {                                                                                           \
        if (pl_log_level >= PL_LOG_WARN)                                                           \
            pl_log_write(PL_LOG_WARN, __VA_ARGS__);                                                \
    } while (0)
#define pl_log_info(...)                                                                           \
    do {                                                                                           \
        if (pl_log_level >= PL_LOG_INFO)                                                           \
            pl_log_write(PL_LOG_INFO, __VA_ARGS__);                                                \
    } while (0)
#define pl_log_debug(...)                                                                          \
    do {                                                                                           \
        if (pl_log_level >= PL_LOG_DEBUG)                                                          \
            pl_log_write(PL_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
