/*
 * Who a connection is and what it may touch: the auth frame's token
 * (common/token.c) turned into a pl_auth_t, the token secret, and the
 * room rules (names, dm rooms, the rooms claim). Pure apart from reading
 * the secret file.
 */
#ifndef PL_AUTH_H
#define PL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "options.h"
#include "token.h"

typedef struct pl_auth {
    char user[PL_USER_MAX + 1]; /* sub */
    char *name;                 /* optional display name, or NULL */
    char **rooms;               /* the rooms claim: names or prefixes ending in '*' */
    size_t nrooms;
    int has_rooms; /* the claim was present (even empty = no rooms) */
    int64_t exp;   /* unix seconds */
} pl_auth_t;

/* Verifies token under rules at now (unix seconds, see pl_token_verify)
 * and fills a. Returns 0, or -1 with *why set to a short static reason for
 * the log (a is then empty: nothing to free). */
int pl_auth_check(const char *token, const pl_token_rules_t *rules, int64_t now, pl_auth_t *a,
                  const char **why);
void pl_auth_free(pl_auth_t *a);

/* Reads token_secret, or token_secret_file (one trailing newline
 * stripped). Returns 0 with a malloc'd secret, or -1 when neither is set
 * or the file cannot be read. */
int pl_auth_load_secret(const pl_gw_config_t *cfg, uint8_t **secret, size_t *len);

/* 1 if name is a valid room: 1-128 of [A-Za-z0-9_.:-]. */
int pl_room_name_valid(const char *name);
/* For "dm:<a>:<b>": 1 and the two users if well formed (both valid ids,
 * a < b strictly); 0 if not a dm room; -1 if it starts with dm: but is
 * malformed. */
int pl_room_dm_users(const char *room, char a[PL_USER_MAX + 1], char b[PL_USER_MAX + 1]);
/* Writes "dm:<lo>:<hi>" for two distinct users into out (PL_ROOM_MAX+1);
 * returns -1 if the result would not be a valid room name. */
int pl_room_dm_name(const char *u1, const char *u2, char *out);
/* May this user join / read room? dm rooms: only their two users;
 * otherwise the rooms claim when present (exact names or "prefix*"). */
int pl_auth_room_allowed(const pl_auth_t *a, const char *room);

#endif
