/*
 * Builders for the Redis key schema (see keys.h).
 */
#include "keys.h"

#include <stdio.h>

void pl_key_room(char *buf, const char *room, const char *what)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:%s", room, what);
}

void pl_key_user(char *buf, const char *user)
{
    snprintf(buf, PL_KEY_MAX, "parley:user:{%s}", user);
}

void pl_key_cid(char *buf, const char *room, const char *user, const char *cid)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:cid:%s:%s", room, user, cid);
}
