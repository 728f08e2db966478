/*
 * Shared outgoing frames for fanout: a message is encoded once into a
 * complete server frame (header + payload) and queued on many connections
 * without copying. Immutable once shared; freed when the last reference
 * goes.
 */
#ifndef PL_FRAME_H
#define PL_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_frame {
    uint32_t refs; /* creator's reference + one per output queue holding it */
    uint32_t len;  /* bytes in data: header + payload */
    uint8_t data[];
} pl_frame_t;

/* Builds a FIN frame with the given opcode around payload; refs = 1 (the
 * caller's). */
pl_frame_t *pl_frame_new(uint8_t opcode, const void *payload, size_t len);
pl_frame_t *pl_frame_ref(pl_frame_t *f);
/* Drops one reference; frees the frame on the last. */
void pl_frame_unref(pl_frame_t *f);

#endif
