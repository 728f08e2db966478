/*
 * Table-driven configuration loader (see config.h). The same setter is
 * used for defaults, the file, the environment and flags, so a value means
 * the same thing wherever it comes from.
 */
#include "config.h"
#include "parse.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const pl_opt_t *find(const pl_opt_t *table, const char *key, size_t keylen)
{
    for (const pl_opt_t *o = table; o->name; o++) {
        if (strlen(o->name) != keylen)
            continue;
        size_t i;
        for (i = 0; i < keylen; i++) {
            char k = key[i] == '-' ? '_' : (char)tolower((unsigned char)key[i]);
            if (k != o->name[i])
                break;
        }
        if (i == keylen)
            return o;
    }
    return NULL;
}

static int set_opt(const pl_opt_t *o, void *cfg, const char *value, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    int64_t v = 0;
    int rc = 0;
    const char *what = "";

    switch (o->type) {
    case PL_OPT_STR:
        break;
    case PL_OPT_BOOL: {
        int b;
        if (pl_parse_bool(value, &b) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (yes/no)", o->name, value);
            return -1;
        }
        *(int *)field = b;
        return 0;
    }
    case PL_OPT_INT:
        rc = pl_parse_i64(value, strlen(value), &v);
        what = "an integer";
        break;
    case PL_OPT_SIZE:
        rc = pl_parse_size(value, &v);
        what = "a size (e.g. 65536, 64k, 4m)";
        break;
    case PL_OPT_DURATION:
        rc = pl_parse_duration_ms(value, &v);
        what = "a duration (e.g. 10, 10s, 500ms, 5m)";
        break;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: '%s' is not %s", o->name, value, what);
        return -1;
    }
    if (o->type != PL_OPT_STR && (o->min || o->max) && (v < o->min || v > o->max)) {
        snprintf(err, errlen, "%s: %s is out of range [%lld, %lld]", o->name, value,
                 (long long)o->min, (long long)o->max);
        return -1;
    }
    if (o->check) {
        char why[200] = "";
        if (o->check(value, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: %s", o->name, why[0] ? why : "invalid value");
            return -1;
        }
    }
    if (o->type == PL_OPT_STR) {
        free(*(char **)field);
        *(char **)field = pl_xstrdup(value);
    } else {
        *(int64_t *)field = v;
    }
    return 0;
}

int pl_config_set(const pl_opt_t *table, void *cfg, const char *key, const char *value, char *err,
                  size_t errlen)
{
    const pl_opt_t *o = find(table, key, strlen(key));
    if (o == NULL) {
        snprintf(err, errlen, "%s: unknown key", key);
        return -1;
    }
    return set_opt(o, cfg, value, err, errlen);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(const pl_opt_t *table, void *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    char buf[4096];
    int lineno = 0, rc = 0;
    while (fgets(buf, sizeof(buf), f)) {
        lineno++;
        char *line = trim(buf);
        if (*line == '\0' || *line == '#' || *line == ';')
            continue;
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "expected 'key = value' (%s:%d)", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(line), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        char why[512];
        if (pl_config_set(table, cfg, key, value, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s (%s:%d)", why, path, lineno);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int load_env(const pl_opt_t *table, void *cfg, char *err, size_t errlen)
{
    for (const pl_opt_t *o = table; o->name; o++) {
        char name[128] = "PARLEY_";
        size_t n = strlen(name);
        for (const char *p = o->name; *p && n + 1 < sizeof(name); p++)
            name[n++] = (char)toupper((unsigned char)*p);
        name[n] = '\0';
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        char why[512];
        if (set_opt(o, cfg, v, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s (environment %s)", why, name);
            return -1;
        }
    }
    return 0;
}

static int load_args(const pl_opt_t *table, void *cfg, int argc, char **argv, char *err,
                     size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const pl_opt_t *o = find(table, a, klen);
        if (o == NULL) {
            snprintf(err, errlen, "--%.*s: unknown option", (int)klen, a);
            return -1;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s: missing value", o->name);
            return -1;
        }
        char why[512];
        if (set_opt(o, cfg, value, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s (command line)", why);
            return -1;
        }
    }
    return 0;
}

int pl_config_load(const pl_opt_t *table, void *cfg, const char *file, int argc, char **argv,
                   char *err, size_t errlen)
{
    for (const pl_opt_t *o = table; o->name; o++) {
        char why[512];
        if (set_opt(o, cfg, o->def ? o->def : "", why, sizeof(why)) < 0) {
            snprintf(err, errlen, "bad built-in default: %s", why);
            return -1;
        }
    }
    if (file && load_file(table, cfg, file, err, errlen) < 0)
        return -1;
    if (load_env(table, cfg, err, errlen) < 0)
        return -1;
    return load_args(table, cfg, argc, argv, err, errlen);
}

void pl_config_free(const pl_opt_t *table, void *cfg)
{
    for (const pl_opt_t *o = table; o->name; o++) {
        if (o->type == PL_OPT_STR) {
            char **field = (char **)((char *)cfg + o->offset);
            free(*field);
            *field = NULL;
        }
    }
}

void pl_config_usage(const pl_opt_t *table, FILE *out)
{
    for (const pl_opt_t *o = table; o->name; o++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", o->name);
        fprintf(out, "  %-24s %s (default: %s)\n", flag, o->help ? o->help : "",
                o->def && *o->def ? o->def : "none");
    }
}
