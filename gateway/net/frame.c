/*
 * Shared, reference-counted server frames (see frame.h). Workers are
 * single-threaded, so the count is a plain integer.
 */
#include "frame.h"
#include "util.h"
#include "ws.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

pl_frame_t *pl_frame_new(uint8_t opcode, const void *payload, size_t len)
{
    pl_frame_t *f = pl_xmalloc(sizeof(*f) + PL_WS_MAX_HEADER + len);
    size_t hlen = pl_ws_header(f->data, opcode, len);
    memcpy(f->data + hlen, payload, len);
    f->len = (uint32_t)(hlen + len);
    f->refs = 1;
    return f;
}

pl_frame_t *pl_frame_ref(pl_frame_t *f)
{
    f->refs++;
    return f;
}

void pl_frame_unref(pl_frame_t *f)
{
    assert(f->refs > 0);
    if (--f->refs == 0)
        free(f);
}
