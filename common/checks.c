/*
 * Option value checks used by both the gateway's and the archiver's
 * tables, so a key that exists in both is validated the same way.
 */
#include "checks.h"
#include "keys.h"
#include "log.h"
#include "mysql_url.h"
#include "parse.h"
#include "redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_check_listen(const char *v, char *err, size_t errlen)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || colon[1] == '\0') {
        snprintf(err, errlen, "'%s' is not host:port", v);
        return -1;
    }
    uint64_t port;
    if (pl_parse_u64(colon + 1, strlen(colon + 1), &port) < 0 || port > 65535) {
        snprintf(err, errlen, "'%s' has no valid port", v);
        return -1;
    }
    return 0;
}

int pl_check_listen_or_off(const char *v, char *err, size_t errlen)
{
    return *v == '\0' ? 0 : pl_check_listen(v, err, errlen);
}

int pl_check_log_level(const char *v, char *err, size_t errlen)
{
    if (pl_log_level_parse(v) < 0) {
        snprintf(err, errlen, "'%s' is not one of error, warn, info, debug", v);
        return -1;
    }
    return 0;
}

int pl_check_redis_url(const char *v, char *err, size_t errlen)
{
    /* The very parser the programs connect with, so what passes here is
     * what a gateway worker or the archiver will use. */
    pl_redis_url_t u;
    if (pl_redis_url_parse(v, &u, err, errlen) < 0)
        return -1;
    pl_redis_url_free(&u);
    return 0;
}

int pl_check_mysql_url(const char *v, char *err, size_t errlen)
{
    if (*v == '\0')
        return 0;
    pl_mysql_url_t u;
    if (pl_mysql_url_parse(v, &u, err, errlen) < 0)
        return -1;
    int ok = u.database != NULL && *u.database != '\0';
    pl_mysql_url_free(&u);
    if (!ok) {
        snprintf(err, errlen, "'%s' names no database", v);
        return -1;
    }
    return 0;
}

int pl_check_text_size(const char *v, char *err, size_t errlen)
{
    int64_t n;
    if (pl_parse_size(v, &n) < 0 || n < 1) {
        snprintf(err, errlen, "'%s' is not a size of at least 1 byte", v);
        return -1;
    }
    if (n > PL_TEXT_MAX) {
        snprintf(err, errlen,
                 "%s is more than %d bytes, the longest text the archiver stores "
                 "(a MySQL TEXT column)",
                 v, PL_TEXT_MAX);
        return -1;
    }
    return 0;
}
