/*
 * libFuzzer target for the client command parser (pl_cmd_parse in
 * gateway/chat/cmd.c): every text frame an authenticated client sends goes
 * through it, so no input may crash it, read outside the frame or leak.
 * The input is one frame, parsed from a private copy of exactly that size
 * twice: with a small text limit (so "too_large" is reachable within
 * libFuzzer's default input length) and with no limit. Each result must
 * keep cmd.h's promises: on success the fields the op needs are set, within
 * their limits and equal to what jansson reads from the same object, and
 * the fields of other ops are left zero; on failure err and msg say why.
 * The two parses must agree: a raised limit only ever turns "too_large"
 * into something else.
 */
#include "auth.h"
#include "cmd.h"
#include "token.h"

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_TEXT 64 /* bytes: the first parse's max_text */

/* The string member key of the parsed object, which a successful parse
 * must have pointed s at. */
static void same_string(const pl_cmd_t *c, const char *key, const char *s, size_t len)
{
    json_t *v = json_object_get(c->root, key);
    assert(json_is_string(v));
    assert(json_string_value(v) == s);
    assert(json_string_length(v) == len);
}

/* A name field (room, to, token, cid): read back with its full length, so
 * it holds no NUL. */
static void same_name(const pl_cmd_t *c, const char *key, const char *s)
{
    assert(s != NULL);
    same_string(c, key, s, strlen(s));
}

static void check_text(const pl_cmd_t *c, size_t max_text)
{
    assert(c->text != NULL);
    assert(c->text_len >= 1 && c->text_len <= max_text);
    same_string(c, "text", c->text, c->text_len);
    if (c->cid != NULL) {
        same_name(c, "cid", c->cid);
        assert(strlen(c->cid) >= 1 && strlen(c->cid) <= PL_CID_MAX);
    } else {
        json_t *cid = json_object_get(c->root, "cid");
        assert(cid == NULL || json_is_null(cid));
    }
}

/* Checks one result of pl_cmd_parse(..., max_text, c) that returned r. */
static void check(const pl_cmd_t *c, int r, size_t max_text)
{
    assert(r == 0 || r == -1);
    if (r == -1) {
        assert(c->err != NULL && c->msg != NULL && c->msg[0] != '\0');
        assert(strcmp(c->err, "bad_request") == 0 || strcmp(c->err, "too_large") == 0);
        if (strcmp(c->err, "too_large") == 0) {
            assert(c->op == OP_SEND || c->op == OP_DM);
            assert(c->text_len > max_text);
        }
        if (c->has_id) {
            json_t *id = json_object_get(c->root, "id");
            assert(json_is_integer(id) && json_integer_value(id) == c->id);
        }
        return;
    }
    assert(c->err == NULL && c->msg == NULL);
    assert(json_is_object((const json_t *)c->root));
    json_t *id = json_object_get(c->root, "id");
    assert(c->has_id == (id != NULL));
    if (c->has_id)
        assert(json_is_integer(id) && json_integer_value(id) == c->id);
    else
        assert(c->id == 0);

    /* what each op reads; everything else stays as memset left it */
    int wants_room = 0, wants_text = 0;
    switch (c->op) {
    case OP_AUTH:
    case OP_REFRESH:
        same_name(c, "token", c->token);
        break;
    case OP_JOIN:
        wants_room = 1;
        if (c->has_since)
            assert(c->since >= 0);
        else
            assert(c->since == 0);
        break;
    case OP_LEAVE:
    case OP_PRESENCE:
    case OP_TYPING:
        wants_room = 1;
        break;
    case OP_SEND:
        wants_room = wants_text = 1;
        break;
    case OP_DM:
        wants_text = 1;
        same_name(c, "to", c->to);
        assert(pl_token_valid_user(c->to, strlen(c->to)));
        assert(strlen(c->to) <= PL_USER_MAX);
        break;
    case OP_HISTORY:
        /* a room, or the cross-room form: sender alone, paged by cursor */
        wants_room = c->room != NULL;
        if (c->room == NULL) {
            assert(c->sender != NULL);
            assert(c->before == 0 && !c->has_after && c->around == 0);
        }
        if (c->sender != NULL) {
            same_name(c, "sender", c->sender);
            assert(pl_token_valid_user(c->sender, strlen(c->sender)));
        }
        if (c->cursor != NULL) {
            assert(c->room == NULL);
            json_t *cur = json_object_get(c->root, "cursor");
            assert(json_is_string(cur) && json_string_value(cur) == c->cursor);
        }
        assert(c->before >= 0 && c->after >= 0 && c->around >= 0);
        assert(c->has_after || c->after == 0);
        assert(c->around == 0 || (c->before == 0 && !c->has_after));
        assert(c->from_ts >= -1 && c->until_ts >= -1);
        assert(c->from_ts < 0 || c->until_ts < 0 || c->from_ts <= c->until_ts);
        assert(c->limit >= 1 && c->limit <= PL_HISTORY_MAX);
        break;
    default:
        assert(!"op out of range");
    }
    if (wants_room) {
        same_name(c, "room", c->room);
        assert(pl_room_name_valid(c->room));
        assert(strlen(c->room) <= PL_ROOM_MAX);
    } else {
        assert(c->room == NULL);
    }
    if (wants_text)
        check_text(c, max_text);
    else
        assert(c->text == NULL && c->text_len == 0 && c->cid == NULL);
    if (c->op != OP_AUTH && c->op != OP_REFRESH)
        assert(c->token == NULL);
    if (c->op != OP_DM)
        assert(c->to == NULL);
    if (c->op != OP_JOIN)
        assert(!c->has_since && c->since == 0);
    if (c->op != OP_HISTORY)
        assert(c->before == 0 && c->limit == 0 && !c->has_after && c->after == 0 &&
               c->around == 0 && c->from_ts == 0 && c->until_ts == 0 && c->sender == NULL &&
               c->cursor == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, exactly size bytes and not NUL-terminated, so ASan
     * catches any read past the frame */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    pl_cmd_t small, big;
    int rs = pl_cmd_parse(buf, size, SMALL_TEXT, &small);
    check(&small, rs, SMALL_TEXT);
    int rb = pl_cmd_parse(buf, size, SIZE_MAX, &big);
    check(&big, rb, SIZE_MAX);

    assert(big.err == NULL || strcmp(big.err, "too_large") != 0);
    if (rs == 0) {
        /* a larger limit accepts the same command, field for field */
        assert(rb == 0 && big.op == small.op && big.has_id == small.has_id && big.id == small.id);
        assert(big.text_len == small.text_len && big.limit == small.limit &&
               big.before == small.before && big.since == small.since);
        assert((big.cid == NULL) == (small.cid == NULL));
    } else if (strcmp(small.err, "bad_request") == 0) {
        /* refused before the text length was looked at, or for the cid
         * after it: never accepted with a larger limit */
        assert(rb == -1 && strcmp(big.err, "bad_request") == 0);
        assert(strcmp(big.msg, small.msg) == 0);
    } else {
        /* too_large: with no limit the text passes; only the cid, read
         * after it, may still be refused */
        json_t *cid = json_object_get(big.root, "cid");
        assert(rb == 0 || (cid != NULL && !json_is_null(cid)));
    }
    pl_cmd_free(&small);
    pl_cmd_free(&big);
    assert(small.root == NULL && big.root == NULL);
    free(buf);
    return 0;
}
