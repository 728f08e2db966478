/*
 * archiver/migrate.c, the parts that need no server: migration file names
 * and scanning a directory of them.
 */
#include "../../archiver/migrate.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_migration_names(void)
{
    unsigned v;
    CU_ASSERT_EQUAL(pl_migration_version("001_messages.sql", &v), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(pl_migration_version("12_x.sql", &v), 0);
    CU_ASSERT_EQUAL(v, 12);
    CU_ASSERT_EQUAL(pl_migration_version("messages.sql", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001messages.sql", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001_messages.sql~", &v), -1);
    CU_ASSERT_EQUAL(pl_migration_version("001_a.txt", &v), -1);
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("SELECT 1;\n", f);
    fclose(f);
}

static void test_migrate_scan(void)
{
    char dir[] = "/tmp/pl-test-migrations-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    touch(dir, "010_later.sql");
    touch(dir, "002_second.sql");
    touch(dir, "001_first.sql");
    touch(dir, "README");
    pl_migration_t *m;
    size_t n;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(pl_migrate_scan(dir, &m, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(m[0].version, 1);
    CU_ASSERT_EQUAL(m[1].version, 2);
    CU_ASSERT_EQUAL(m[2].version, 10);
    CU_ASSERT_STRING_EQUAL(m[2].name, "010_later.sql");
    pl_migrate_free(m, n);
    touch(dir, "02_dup.sql");
    CU_ASSERT_EQUAL(pl_migrate_scan(dir, &m, &n, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "same version"));
    CU_ASSERT_EQUAL(pl_migrate_scan("/nonexistent/dir", &m, &n, err, sizeof(err)), -1);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    CU_ASSERT_STRING_EQUAL(pl_migrate_default_dir("/x"), "/x");
}

PL_UNIT_SUITE(archiver_migrate, PL_TEST(test_migration_names), PL_TEST(test_migrate_scan))
