/*
 * MySQL/MariaDB connection URLs, split into the parts mysql_real_connect()
 * takes. Shared by the archiver and the gateway's history reader; no MySQL
 * types here. Accepted forms:
 *
 *   mysql://user:password@host:port/database
 *   mysql://user@host/database               (port 3306)
 *   mysql://user@[::1]:3307/database         (IPv6 literal)
 *   mysql://user:pw@/database?socket=/run/mysqld/mysqld.sock
 *   mysql://user@localhost/database?socket=/path/to.sock
 *   /run/mysqld/mysqld.sock?user=root&database=parley
 *   /run/mysqld/mysqld.sock                  (no user, no database)
 *
 * user, password and database may be percent-encoded (%40 for '@', %2F for
 * '/', ...). Query parameters: socket, user, password, database; any other
 * is an error. With a socket the host is ignored. Note that libmariadb
 * treats the host "localhost" as "the default unix socket": use 127.0.0.1
 * to force TCP.
 */
#ifndef PL_MYSQL_URL_H
#define PL_MYSQL_URL_H

#include <stddef.h>

typedef struct pl_mysql_url {
    char *user;     /* NULL when the URL names none (the client library's default) */
    char *password; /* NULL when absent; "" for an explicit empty password */
    char *host;     /* NULL for a unix socket URL; otherwise never empty */
    unsigned port;  /* 3306 unless given; 0 for a unix socket */
    char *socket;   /* unix socket path, or NULL for TCP */
    char *database; /* NULL when absent */
} pl_mysql_url_t;

#define PL_MYSQL_DEFAULT_PORT 3306

/* Parses url into *out (all strings heap-allocated, owned by *out; free
 * with pl_mysql_url_free). Returns 0, or -1 with a reason in err and *out
 * left zeroed. */
int pl_mysql_url_parse(const char *url, pl_mysql_url_t *out, char *err, size_t errlen);

/* Frees the strings and zeroes *u; safe on a zeroed struct. */
void pl_mysql_url_free(pl_mysql_url_t *u);

/* Writes a loggable form without the password ("user@host:port/db" or
 * "user@unix:/path/db") into buf; returns buf. */
char *pl_mysql_url_describe(const pl_mysql_url_t *u, char *buf, size_t len);

#endif
