/*
 * Schema migrations: deploy/sql/NNN_name.sql files applied in version
 * order, each recorded in schema_migrations (version, name, applied_at)
 * so `parley-archiver migrate` only runs the missing ones. Concurrent runs
 * are serialized with GET_LOCK. DDL commits implicitly in MySQL, so a
 * migration that fails half-way is not rolled back: write each one so it
 * can be re-run (CREATE TABLE IF NOT EXISTS ...).
 */
#ifndef PL_ARCH_MIGRATE_H
#define PL_ARCH_MIGRATE_H

#include "mysql_url.h"

#include <stddef.h>

typedef struct pl_migration {
    unsigned version; /* the leading number of the file name */
    char *name;       /* file name, e.g. "001_messages.sql" */
    char *path;       /* dir/name */
} pl_migration_t;

/* Parses "NNN_anything.sql" (at least one digit, then '_', ending in
 * ".sql"); returns 0 and the version, or -1 for other names. */
int pl_migration_version(const char *fname, unsigned *version);

/* Lists dir's migrations sorted by version into a new array. Returns 0, or
 * -1 with err filled (unreadable dir, two files with one version). */
int pl_migrate_scan(const char *dir, pl_migration_t **out, size_t *n, char *err, size_t errlen);
void pl_migrate_free(pl_migration_t *m, size_t n);

/* Picks the migrations directory: configured if not empty, else the
 * installed one if it exists, else the source tree's deploy/sql. */
const char *pl_migrate_default_dir(const char *configured);

/* Applies the missing migrations. Returns 0, or -1 after logging why;
 * *transient is set to 1 if the failure was a connection problem. */
int pl_migrate_run(const pl_mysql_url_t *url, const char *dir, int *transient);

#endif
