/*
 * The echo module (see echo.h): the smallest user of the ops table, and
 * the transport's own test endpoint. Replies go through the same output
 * queue and limits as chat's (send_buffer_limit, frame counters).
 */
#include "echo.h"
#include "ops.h"

static void on_text(pl_conn_t *c, const uint8_t *text, size_t len)
{
    pl_conn_send_text(c, (const char *)text, len);
}

static void on_binary(pl_conn_t *c, const uint8_t *data, size_t len)
{
    pl_conn_send_binary(c, data, len);
}

static const pl_ws_ops_t echo_ops = {
    .name = "echo",
    .message = on_text,
    .binary = on_binary,
};

int pl_echo_register(const char *path)
{
    if (path == NULL || *path == '\0')
        return 0;
    return pl_ops_register(path, &echo_ops);
}
