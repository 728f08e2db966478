/*
 * The Redis URL both programs read from redis_url, parsed by one function
 * so that --check-config, the gateway's workers and the archiver accept,
 * reject and authenticate the same way:
 *
 *   redis://[[user]:password@]host[:port][/db]   TCP; host may be [IPv6]
 *   redis://password@host...                     password alone (as redis-cli)
 *   unix:///path/to/socket[?db=N]                a unix socket
 *   /path/to/socket[?db=N]                       the same, without the scheme
 *
 * An empty host is 127.0.0.1, a missing port 6379, a missing db 0. The
 * userinfo ends at the last '@' before the path, so a password may hold
 * '@' and ':' but not '/' (percent-escapes are not decoded).
 */
#ifndef PL_REDIS_URL_H
#define PL_REDIS_URL_H

#include <stddef.h>

#define PL_REDIS_DEFAULT_PORT 6379
#define PL_REDIS_MAX_DB 1000000 /* far above any server's `databases` */

/* A parsed URL; every string is owned by the struct (pl_redis_url_free). */
typedef struct pl_redis_url {
    char *host;     /* host name or address, IPv6 without brackets; NULL for a socket */
    int port;       /* 1-65535; 0 for a socket */
    char *socket;   /* absolute socket path, or NULL */
    char *user;     /* ACL user for AUTH, or NULL (AUTH password alone) */
    char *password; /* NULL: no AUTH; "" is an (empty) password */
    int db;         /* SELECT this database after connecting when not 0 */
} pl_redis_url_t;

/* Parses url into *out. Returns 0, or -1 with a reason naming the URL in
 * err; *out is then all NULL/0 and needs no free. */
int pl_redis_url_parse(const char *url, pl_redis_url_t *out, char *err, size_t errlen);
void pl_redis_url_free(pl_redis_url_t *u);

/* The AUTH command for u as an argv: "AUTH password" or "AUTH user
 * password". Returns its argc (2 or 3), or 0 when u has no password (send
 * no AUTH). argv and lens alias u's strings. */
int pl_redis_url_auth(const pl_redis_url_t *u, const char *argv[3], size_t lens[3]);

#endif
