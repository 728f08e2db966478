/*
 * Applies deploy/sql migrations in order and records them (see migrate.h).
 */
#include "migrate.h"
#include "log.h"
#include "util.h"
#include "writer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef PL_SQL_DIR
#define PL_SQL_DIR "/usr/local/share/parley/sql"
#endif
#ifndef PL_SRC_SQL_DIR
#define PL_SRC_SQL_DIR "deploy/sql"
#endif

int pl_migration_version(const char *fname, unsigned *version)
{
    size_t n = strlen(fname);
    if (n < 6 || strcmp(fname + n - 4, ".sql") != 0 || !isdigit((unsigned char)fname[0]))
        return -1;
    unsigned long v = 0;
    size_t i = 0;
    while (isdigit((unsigned char)fname[i])) {
        v = v * 10 + (unsigned long)(fname[i] - '0');
        if (v > 999999999)
            return -1;
        i++;
    }
    if (fname[i] != '_')
        return -1;
    *version = (unsigned)v;
    return 0;
}

static int by_version(const void *a, const void *b)
{
    const pl_migration_t *x = a, *y = b;
    return x->version < y->version ? -1 : x->version > y->version;
}

void pl_migrate_free(pl_migration_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].name);
        free(m[i].path);
    }
    free(m);
}

int pl_migrate_scan(const char *dir, pl_migration_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    pl_migration_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned version;
        if (pl_migration_version(de->d_name, &version) < 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            v = pl_xrealloc(v, cap * sizeof(*v));
        }
        v[cnt].version = version;
        v[cnt].name = pl_xstrdup(de->d_name);
        size_t plen = strlen(dir) + strlen(de->d_name) + 2;
        v[cnt].path = pl_xmalloc(plen);
        snprintf(v[cnt].path, plen, "%s/%s", dir, de->d_name);
        cnt++;
    }
    closedir(d);
    if (cnt > 1)
        qsort(v, cnt, sizeof(*v), by_version);
    for (size_t i = 1; i < cnt; i++) {
        if (v[i].version == v[i - 1].version) {
            snprintf(err, errlen, "migrations %s and %s have the same version %u", v[i - 1].name,
                     v[i].name, v[i].version);
            pl_migrate_free(v, cnt);
            return -1;
        }
    }
    *out = v;
    *n = cnt;
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *pl_migrate_default_dir(const char *configured)
{
    if (configured && *configured)
        return configured;
    if (is_dir(PL_SQL_DIR))
        return PL_SQL_DIR;
    return PL_SRC_SQL_DIR;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = pl_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = pl_xrealloc(buf, cap);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Runs a (possibly multi-statement) script and discards its results.
 * Returns 0 or -1 with the error left on m. */
static int exec_all(MYSQL *m, const char *sql, size_t len)
{
    if (mysql_real_query(m, sql, (unsigned long)len) != 0)
        return -1;
    for (;;) {
        MYSQL_RES *res = mysql_store_result(m);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(m) != 0)
            return -1;
        int more = mysql_next_result(m);
        if (more > 0)
            return -1;
        if (more < 0)
            return 0;
    }
}

static int fail(MYSQL *m, const char *what, int *transient)
{
    unsigned e = mysql_errno(m);
    *transient = pl_arch_mysql_transient(e);
    pl_log_error("migration failed\tstep=\"%s\" errno=%u error=\"%s\"", what, e, mysql_error(m));
    return -1;
}

int pl_migrate_run(const pl_mysql_url_t *url, const char *dir, int *transient)
{
    *transient = 0;
    char err[512];
    pl_migration_t *list;
    size_t n;
    if (pl_migrate_scan(dir, &list, &n, err, sizeof(err)) < 0) {
        pl_log_error("cannot list migrations\terror=\"%s\"", err);
        return -1;
    }
    if (n == 0) {
        pl_log_error("no migrations found\tdir=\"%s\"", dir);
        pl_migrate_free(list, n);
        return -1;
    }
    unsigned e = 0;
    MYSQL *m = pl_arch_mysql_open(url, CLIENT_MULTI_STATEMENTS, err, sizeof(err), &e);
    if (m == NULL) {
        *transient = pl_arch_mysql_transient(e);
        pl_log_error("cannot connect to MySQL\terrno=%u error=\"%s\"", e, err);
        pl_migrate_free(list, n);
        return -1;
    }
    int rc = -1, applied = 0;
    MYSQL_RES *res = NULL;
    char *done = NULL;
    /* Serialize concurrent `migrate` runs (e.g. several hosts deploying). */
    const char *lock = "SELECT GET_LOCK('parley_schema_migrations', 60)";
    if (exec_all(m, lock, strlen(lock)) < 0) {
        fail(m, "GET_LOCK", transient);
        goto out;
    }
    const char *create = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version INT UNSIGNED NOT NULL PRIMARY KEY,"
                         " name VARCHAR(255) NOT NULL,"
                         " applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"
                         ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    if (exec_all(m, create, strlen(create)) < 0) {
        fail(m, "CREATE TABLE schema_migrations", transient);
        goto out;
    }
    if (mysql_query(m, "SELECT version FROM schema_migrations") != 0 ||
        (res = mysql_store_result(m)) == NULL) {
        fail(m, "SELECT schema_migrations", transient);
        goto out;
    }
    done = pl_xcalloc(n, 1);
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long v = strtoul(row[0], NULL, 10);
        int known = 0;
        for (size_t i = 0; i < n; i++) {
            if (list[i].version == v) {
                done[i] = 1;
                known = 1;
            }
        }
        if (!known)
            pl_log_warn("database has a migration with no file\tversion=%lu dir=\"%s\"", v, dir);
    }
    mysql_free_result(res);
    res = NULL;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        size_t len;
        char *sql = read_file(list[i].path, &len);
        if (sql == NULL) {
            pl_log_error("cannot read migration\tpath=\"%s\" error=\"%s\"", list[i].path,
                         strerror(errno));
            goto out;
        }
        pl_log_info("applying migration\tversion=%u name=%s", list[i].version, list[i].name);
        int bad = exec_all(m, sql, len);
        free(sql);
        if (bad) {
            fail(m, list[i].name, transient);
            goto out;
        }
        char ins[600];
        char ename[520];
        mysql_real_escape_string(m, ename, list[i].name, (unsigned long)strlen(list[i].name));
        snprintf(ins, sizeof(ins),
                 "INSERT INTO schema_migrations (version, name) VALUES (%u, '%s')", list[i].version,
                 ename);
        if (exec_all(m, ins, strlen(ins)) < 0) {
            fail(m, "INSERT schema_migrations", transient);
            goto out;
        }
        applied++;
    }
    pl_log_info("schema up to date\tapplied=%d latest=%u dir=\"%s\"", applied, list[n - 1].version,
                dir);
    rc = 0;
out:
    if (res)
        mysql_free_result(res);
    free(done);
    mysql_close(m);
    pl_migrate_free(list, n);
    return rc;
}
