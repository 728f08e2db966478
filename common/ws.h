/*
 * WebSocket codec, server side of RFC 6455: the handshake accept key,
 * incremental frame parsing with every protocol check (text is checked
 * with the validator in utf8.h) and frame header encoding. Pure functions
 * on memory: no sockets, no libevent, so it is unit-tested and fuzzed on
 * its own.
 */
#ifndef PL_WS_H
#define PL_WS_H

#include "utf8.h"

#include <stddef.h>
#include <stdint.h>

enum pl_ws_opcode {
    PL_WS_CONT = 0x0,   /* continuation of a fragmented message */
    PL_WS_TEXT = 0x1,   /* UTF-8 text message (start) */
    PL_WS_BINARY = 0x2, /* binary message (start) */
    PL_WS_CLOSE = 0x8,  /* close handshake */
    PL_WS_PING = 0x9,   /* must be answered by a pong with the same payload */
    PL_WS_PONG = 0xA,   /* answer to our ping, or unsolicited heartbeat */
};

/* Close codes the codec and the servers send. */
enum pl_ws_close_code {
    PL_WS_CLOSE_NORMAL = 1000,
    PL_WS_CLOSE_GOING_AWAY = 1001,  /* server draining */
    PL_WS_CLOSE_PROTOCOL = 1002,    /* any framing violation */
    PL_WS_CLOSE_UNSUPPORTED = 1003, /* binary where only text is allowed */
    PL_WS_CLOSE_BAD_DATA = 1007,    /* text or close reason not UTF-8 */
    PL_WS_CLOSE_POLICY = 1008,      /* auth failure, abuse */
    PL_WS_CLOSE_TOO_BIG = 1009,     /* message over max_message_size */
    PL_WS_CLOSE_INTERNAL = 1011,    /* server bug or dependency failure */
    PL_WS_CLOSE_TRY_AGAIN = 1013,   /* slow consumer: output buffer over limit */
};

/* Parser state for one connection. Initialise with pl_ws_parser_init. */
typedef struct pl_ws_parser {
    uint64_t max_message; /* limit on a whole (reassembled) message */
    uint64_t msg_len;     /* bytes of the open data message so far */
    uint8_t msg_opcode;   /* PL_WS_TEXT/BINARY while a fragmented message is open, else 0 */
    pl_utf8_t utf8;       /* validator state across the open text message */
} pl_ws_parser_t;

/* One parsed frame. payload points into the caller's buffer and has been
 * unmasked in place; it is valid until the caller moves that buffer. */
typedef struct pl_ws_frame {
    uint8_t opcode;     /* enum pl_ws_opcode; PL_WS_CONT for continuations */
    uint8_t fin;        /* 1 on the last frame of a message (always for control) */
    uint8_t msg_opcode; /* for data frames: TEXT or BINARY of the message it belongs to */
    uint8_t *payload;
    uint64_t len;
    uint16_t close_code;   /* CLOSE only: code sent, or 1005 if the payload was empty */
    const uint8_t *reason; /* CLOSE only: reason bytes (validated UTF-8) */
    size_t reason_len;
} pl_ws_frame_t;

void pl_ws_parser_init(pl_ws_parser_t *p, uint64_t max_message);

/*
 * Parses the first frame in buf[0..len).
 *   PL_OK (0): *out is filled and *consumed bytes (header + payload) may be
 *     dropped from the buffer after the caller is done with the payload.
 *   PL_AGAIN: the frame is incomplete; call again with more bytes. Checks
 *     that only need the header (reserved bits, opcodes, masking, control
 *     frame rules, the message size limit) fire as soon as the header has
 *     arrived, before the payload is buffered.
 *   a close code (>= 1000): protocol violation; close with that code.
 * Text payloads are UTF-8-checked incrementally across fragments (1007);
 * a CLOSE payload is checked (1-byte or invalid code -> 1002, reason not
 * UTF-8 -> 1007). Non-minimal length encodings are refused (1002).
 * max_message bounds the payload bytes of one data message (all its
 * fragments); control frames do not count. Because of the in-place
 * unmasking, never parse the same bytes twice after PL_OK: drop *consumed
 * first. Control frames come back between fragments with the message
 * still open (p->msg_opcode unchanged).
 */
int pl_ws_parse(pl_ws_parser_t *p, uint8_t *buf, size_t len, pl_ws_frame_t *out, size_t *consumed);

/* True if a peer may send this close code (RFC 6455 7.4, IANA registry). */
int pl_ws_close_code_valid(uint16_t code);

/* Maximum header size of a server (unmasked) frame. */
#define PL_WS_MAX_HEADER 10

/* Writes a FIN, unmasked server frame header for a payload of len bytes;
 * returns the header length (2, 4 or 10). */
size_t pl_ws_header(uint8_t *out, uint8_t opcode, uint64_t len);

/* Writes a complete masked client frame (for tests and the load
 * generator); returns its length. out needs len + 14 bytes. */
size_t pl_ws_client_frame(uint8_t *out, uint8_t opcode, int fin, const uint8_t *payload, size_t len,
                          uint32_t mask);

/* Computes Sec-WebSocket-Accept for a Sec-WebSocket-Key value. Returns 0
 * and 28 chars + NUL in out, or -1 if the key is not the base64 of 16
 * bytes (RFC 6455 4.2.1: such a request gets 400). key must already be
 * trimmed of header whitespace. */
int pl_ws_accept_key(const char *key, size_t keylen, char out[29]);

#endif
