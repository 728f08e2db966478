/*
 * The message envelope published on Redis channels (msgpack). Receiving
 * workers parse it, skip the origin connection and write the ready event
 * JSON it carries as one shared frame; they never re-encode the event.
 *
 * Layout (docs/protocol.md): a msgpack array of 8 items
 *   [version=1, kind, room, node, worker, conn, seq, json]
 * kind is the string "msg", "presence" or "typing"; room, node and json are
 * str (bin is accepted too); worker, conn and seq are integers (seq 0 when
 * the kind has none, node "" and conn 0 when there is no origin).
 */
#ifndef PL_ENVELOPE_H
#define PL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define PL_ENVELOPE_VERSION 1

typedef enum {
    PL_ENV_MSG,      /* a stored chat message (room or dm); has a seq */
    PL_ENV_PRESENCE, /* a user's first connection joined / last one left */
    PL_ENV_TYPING,   /* ephemeral typing notice */
} pl_env_kind_t;

typedef struct pl_envelope {
    pl_env_kind_t kind;
    const char *room; /* not NUL-terminated; points into the parsed buffer */
    size_t room_len;
    const char *node; /* origin node id ("" = no origin) */
    size_t node_len;
    int64_t worker;   /* origin worker index (-1 = none) */
    uint64_t conn;    /* origin connection id (0 = none) */
    int64_t seq;      /* room sequence number (msg only, else 0) */
    const char *json; /* the client event, complete JSON text */
    size_t json_len;
} pl_envelope_t;

/* Parses one envelope. On success returns 0 and fills *e with pointers
 * into buf (valid as long as buf is). Returns -1 on anything malformed:
 * wrong type, wrong item count, unknown version or kind, trailing bytes. */
int pl_envelope_parse(const void *buf, size_t len, pl_envelope_t *e);

/* Packs an envelope; returns a malloc'd buffer the caller frees, its
 * length in *len. */
char *pl_envelope_pack(const pl_envelope_t *e, size_t *len);

/* "msg", "presence", "typing". */
const char *pl_envelope_kind_name(pl_env_kind_t kind);

#endif
