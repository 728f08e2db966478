/*
 * Authentication and room permissions (see auth.h).
 */
#include "auth.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_auth_check(const char *token, const pl_token_rules_t *rules, int64_t now, pl_auth_t *a,
                  const char **why)
{
    char *claims = NULL;
    memset(a, 0, sizeof(*a));
    pl_token_status_t st = pl_token_verify(token, rules, now, &claims);
    if (st != PL_TOKEN_OK) {
        *why = pl_token_status_str(st);
        return -1;
    }
    json_error_t jerr;
    json_t *c = json_loads(claims, 0, &jerr);
    free(claims);
    if (c == NULL) {
        *why = "claims unreadable";
        return -1;
    }
    snprintf(a->user, sizeof(a->user), "%s", json_string_value(json_object_get(c, "sub")));
    a->exp = json_integer_value(json_object_get(c, "exp"));
    const char *name = json_string_value(json_object_get(c, "name"));
    if (name)
        a->name = pl_xstrdup(name);
    json_t *rooms = json_object_get(c, "rooms");
    if (json_is_array(rooms)) {
        a->has_rooms = 1;
        a->nrooms = json_array_size(rooms);
        a->rooms = pl_xcalloc(a->nrooms + 1, sizeof(*a->rooms));
        for (size_t i = 0; i < a->nrooms; i++)
            a->rooms[i] = pl_xstrdup(json_string_value(json_array_get(rooms, i)));
    }
    json_decref(c);
    return 0;
}

void pl_auth_free(pl_auth_t *a)
{
    for (size_t i = 0; i < a->nrooms; i++)
        free(a->rooms[i]);
    free(a->rooms);
    free(a->name);
    memset(a, 0, sizeof(*a));
}

int pl_auth_load_secret(const pl_gw_config_t *cfg, uint8_t **secret, size_t *len)
{
    if (cfg->token_secret && *cfg->token_secret) {
        *len = strlen(cfg->token_secret);
        *secret = (uint8_t *)pl_xstrdup(cfg->token_secret);
        return 0;
    }
    if (cfg->token_secret_file == NULL || *cfg->token_secret_file == '\0')
        return -1;
    FILE *f = fopen(cfg->token_secret_file, "rb");
    if (f == NULL)
        return -1;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n == 0)
        return -1;
    *secret = pl_xmalloc(n + 1);
    memcpy(*secret, buf, n);
    (*secret)[n] = '\0';
    *len = n;
    return 0;
}

int pl_room_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > PL_ROOM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == ':' || ch == '-'))
            return 0;
    }
    return 1;
}

int pl_room_dm_users(const char *room, char a[PL_USER_MAX + 1], char b[PL_USER_MAX + 1])
{
    if (strncmp(room, "dm:", 3) != 0)
        return 0;
    const char *p = room + 3;
    const char *colon = strchr(p, ':');
    if (colon == NULL)
        return -1;
    size_t na = (size_t)(colon - p), nb = strlen(colon + 1);
    if (!pl_token_valid_user(p, na) || !pl_token_valid_user(colon + 1, nb))
        return -1;
    memcpy(a, p, na);
    a[na] = '\0';
    memcpy(b, colon + 1, nb);
    b[nb] = '\0';
    if (strcmp(a, b) >= 0)
        return -1;
    return 1;
}

int pl_room_dm_name(const char *u1, const char *u2, char *out)
{
    int c = strcmp(u1, u2);
    if (c == 0)
        return -1;
    const char *lo = c < 0 ? u1 : u2, *hi = c < 0 ? u2 : u1;
    int n = snprintf(out, PL_ROOM_MAX + 1, "dm:%s:%s", lo, hi);
    if (n < 0 || n > PL_ROOM_MAX)
        return -1;
    return pl_room_name_valid(out) ? 0 : -1;
}

int pl_auth_room_allowed(const pl_auth_t *a, const char *room)
{
    char x[PL_USER_MAX + 1], y[PL_USER_MAX + 1];
    int dm = pl_room_dm_users(room, x, y);
    if (dm < 0)
        return 0;
    if (dm > 0)
        return strcmp(a->user, x) == 0 || strcmp(a->user, y) == 0;
    if (!a->has_rooms)
        return 1;
    for (size_t i = 0; i < a->nrooms; i++) {
        const char *r = a->rooms[i];
        size_t n = strlen(r);
        if (n > 0 && r[n - 1] == '*') {
            if (strncmp(room, r, n - 1) == 0)
                return 1;
        } else if (strcmp(room, r) == 0) {
            return 1;
        }
    }
    return 0;
}
