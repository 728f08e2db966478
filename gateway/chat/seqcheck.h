/*
 * Telling a duplicate from a seq regression (docs/protocol.md 2). A room
 * stream (and a DM stream) hands out each seq once; a live message whose
 * seq is at or below the last one delivered is normally a copy of one
 * already handed out (a catch-up fetch and the live publish overlap). But
 * if Redis lost the room's seq key (expiry, a restart from an older
 * snapshot) new messages get seqs that were used before, and dropping them
 * as duplicates loses acknowledged messages silently. This remembers the
 * last few (seq, msg_id) pairs delivered and the newest timestamp, and
 * says which of the two an old seq is. Pure: no I/O, no allocation; the
 * state lives inside pl_room_t / dmstream_t.
 */
#ifndef PL_SEQCHECK_H
#define PL_SEQCHECK_H

#include <stddef.h>
#include <stdint.h>

#define PL_SEQCHECK_N 8 /* (seq, msg_id) pairs remembered per stream */

typedef struct pl_seqcheck {
    int64_t seq[PL_SEQCHECK_N]; /* 0 = empty slot */
    uint64_t id[PL_SEQCHECK_N]; /* msg_id fingerprints (pl_seqcheck_parse) */
    unsigned next;              /* slot the next pair goes to */
    int64_t last_ts;            /* newest event ts delivered (0 = none yet) */
} pl_seqcheck_t;

typedef enum {
    PL_SEQ_DUP,        /* a copy of a message already delivered: drop it */
    PL_SEQ_REGRESSION, /* a different message under a used seq: deliver it */
} pl_seq_verdict_t;

/* From a msg event (JSON as the send script builds it, or a complete
 * frame around it; n bytes, no NUL needed): *id = the first 16 hex digits
 * of msg_id as a number, *ts = the ts field. Returns 0, or -1 when either
 * is missing (then *id = 0 and *ts = 0). */
int pl_seqcheck_parse(const void *buf, size_t n, uint64_t *id, int64_t *ts);

/* Remembers a message handed to the stream's members. */
void pl_seqcheck_note(pl_seqcheck_t *c, int64_t seq, uint64_t id, int64_t ts);

/* A message with seq at or below the last delivered one: a remembered seq
 * is a duplicate only under the same msg_id; a seq no longer (or never)
 * remembered is a regression when it is newer than everything delivered
 * (ts > last_ts: published after the last delivered message, so Redis
 * handed out a used seq), else a duplicate. An unparsed message (id 0) is
 * a duplicate. */
pl_seq_verdict_t pl_seqcheck_old(const pl_seqcheck_t *c, int64_t seq, uint64_t id, int64_t ts);

#endif
