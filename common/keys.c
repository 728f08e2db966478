/*
 * Builders and parsers for the Redis key schema (see keys.h for the list
 * of keys). Every room key has one shape, "parley:{<room>}:<what>", built
 * by room_key so the hash tag is written in one place.
 */
#include "keys.h"

#include <stdio.h>
#include <string.h>

/* room as %.*s: the archiver passes bytes, the gateway a C string. */
static void room_key(char *buf, size_t size, const char *room, size_t room_len, const char *what)
{
    snprintf(buf, size, "parley:{%.*s}:%s", (int)room_len, room, what);
}

void pl_key_room(char *buf, const char *room, const char *what)
{
    room_key(buf, PL_KEY_MAX, room, strlen(room), what);
}

void pl_key_seq(char *buf, const char *room)
{
    pl_key_room(buf, room, "seq");
}

void pl_key_recent(char *buf, const char *room)
{
    pl_key_room(buf, room, "recent");
}

void pl_key_archived(char *buf, const char *room)
{
    pl_key_room(buf, room, "archived");
}

void pl_key_presence(char *buf, const char *room)
{
    pl_key_room(buf, room, "presence");
}

void pl_key_presence_users(char *buf, const char *room)
{
    pl_key_room(buf, room, "presence:users");
}

void pl_key_cid(char *buf, const char *room, const char *user, const char *cid)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:cid:%s:%s", room, user, cid);
}

void pl_key_noseq(char *buf, const char *room, const char *origin, int worker)
{
    snprintf(buf, PL_KEY_MAX, "parley:{%s}:noseq:%s.%d", room, origin, worker);
}

void pl_key_archived_n(char *buf, size_t size, const char *room, size_t room_len)
{
    room_key(buf, size, room, room_len, "archived");
}

void pl_key_archived_runs_n(char *buf, size_t size, const char *room, size_t room_len)
{
    room_key(buf, size, room, room_len, "archived:runs");
}

void pl_key_room_channel(char *buf, const char *room)
{
    pl_key_room(buf, room, "ch");
}

void pl_key_user(char *buf, const char *user)
{
    snprintf(buf, PL_KEY_MAX, "parley:user:{%s}", user);
}

void pl_key_user_conns(char *buf, const char *user)
{
    snprintf(buf, PL_KEY_MAX, "parley:user:{%s}:conns", user);
}

void pl_key_node(char *buf, const char *node_id, int worker)
{
    snprintf(buf, PL_KEY_MAX, "parley:node:{%s}:%d", node_id, worker);
}

/* Copies the part of ch between prefix and suffix (1..max bytes) into out. */
static int channel_part(const char *ch, size_t n, const char *prefix, const char *suffix,
                        size_t max, char *out)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (n < pl + sl + 1 || strncmp(ch, prefix, pl) != 0 || memcmp(ch + n - sl, suffix, sl) != 0)
        return -1;
    size_t len = n - pl - sl;
    if (len > max)
        return -1;
    memcpy(out, ch + pl, len);
    out[len] = '\0';
    return 0;
}

int pl_key_parse_room_channel(const char *ch, size_t n, char room[PL_ROOM_MAX + 1])
{
    return channel_part(ch, n, "parley:{", "}:ch", PL_ROOM_MAX, room);
}

int pl_key_parse_user(const char *ch, size_t n, char user[PL_USER_MAX + 1])
{
    return channel_part(ch, n, "parley:user:{", "}", PL_USER_MAX, user);
}
