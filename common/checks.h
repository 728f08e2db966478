/*
 * Value checks shared by the programs' option tables (pl_opt_t.check):
 * each returns 0, or -1 with a reason in err.
 */
#ifndef PL_CHECKS_H
#define PL_CHECKS_H

#include <stddef.h>

/* host:port with a port in 0-65535; never empty. */
int pl_check_listen(const char *v, char *err, size_t errlen);
/* host:port, or empty for "off". */
int pl_check_listen_or_off(const char *v, char *err, size_t errlen);
/* error|warn|info|debug. */
int pl_check_log_level(const char *v, char *err, size_t errlen);
/* A redis_url that pl_redis_url_parse accepts (redis_url.h). */
int pl_check_redis_url(const char *v, char *err, size_t errlen);
/* A mysql_url that names a database, or empty (off / checked at use). */
int pl_check_mysql_url(const char *v, char *err, size_t errlen);

/* A size (parse.h) of 1 to PL_TEXT_MAX bytes (keys.h): max_text_size. */
int pl_check_text_size(const char *v, char *err, size_t errlen);

#endif
