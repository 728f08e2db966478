/*
 * Chat protocol v1 commands: the pure part of cmd.c (parsing and
 * validating one client frame), split out so it is unit-tested without
 * sockets or Redis. docs/protocol.md is the reference for every rule.
 */
#ifndef PL_CMD_H
#define PL_CMD_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    OP_AUTH,
    OP_JOIN,
    OP_LEAVE,
    OP_SEND,
    OP_DM,
    OP_HISTORY,
    OP_PRESENCE,
    OP_TYPING,
    OP_REFRESH,
} pl_op_t;

#define PL_HISTORY_DEFAULT 50
#define PL_HISTORY_MAX 200
#define PL_CID_MAX 64

typedef struct pl_cmd {
    pl_op_t op;
    int has_id; /* "id" present and an integer */
    int64_t id;
    const char *token; /* auth, refresh */
    const char *room;  /* join, leave, send, history, presence, typing (validated name) */
    const char *to;    /* dm (validated user id) */
    const char *text;  /* send, dm: 1..max_text bytes */
    size_t text_len;
    const char *cid; /* send, dm: optional, 1-64 bytes, no '|' */
    int has_since;   /* join */
    int64_t since;
    int64_t before; /* history: 0 = newest */
    int limit;      /* history: 1-200 */
    int has_after;  /* history: forward paging from after (seq > after) */
    int64_t after;
    int64_t around;     /* history: page centred on this seq (0 = none) */
    int64_t from_ts;    /* history: unix ms, inclusive (-1 = none) */
    int64_t until_ts;   /* history: unix ms, inclusive (-1 = none) */
    const char *sender; /* history: only this user's messages (NULL = all) */
    const char *cursor; /* history, cross-room form: the previous reply's "next" */
    const char *err;    /* on failure: error code (bad_request, too_large) */
    const char *msg;    /* on failure: human message */
    void *root;         /* the parsed json_t (strings above point into it) */
} pl_cmd_t;

/* Parses one text frame. Returns 0, or -1 with err/msg set (and has_id/id
 * when the id itself was readable). Always call pl_cmd_free after. */
int pl_cmd_parse(const char *text, size_t len, size_t max_text, pl_cmd_t *cmd);
void pl_cmd_free(pl_cmd_t *cmd);

#endif
