/*
 * The path -> module table (see ops.h): a few fixed slots the master fills
 * before forking, the lookup conn.c does on each upgrade, and the worker
 * hooks worker.c runs over every registered module.
 *
 * conn.c stores the slot id in 3 bits of its connection (the struct is
 * kept small: tens of thousands live at once) and reaches the module
 * through pl_ops_by_id, one load, then the hook's function pointer.
 */
#include "log.h"
#include "net_private.h"
#include "util.h"

#include <stdlib.h>

const pl_ws_ops_t *pl_ops_by_id[PL_OPS_MAX + 1];
static char *paths[PL_OPS_MAX + 1]; /* owned copies, same ids */
static unsigned nops;               /* ids 1..nops are in use */

int pl_ops_register(const char *path, const pl_ws_ops_t *ops)
{
    if (nops == PL_OPS_MAX) {
        pl_log_error("too many websocket paths\tpath=%s module=%s max=%d", path, ops->name,
                     PL_OPS_MAX);
        return -1;
    }
    nops++;
    paths[nops] = pl_xstrdup(path);
    pl_ops_by_id[nops] = ops;
    return 0;
}

void pl_ops_clear(void)
{
    for (unsigned i = 1; i <= nops; i++) {
        free(paths[i]);
        paths[i] = NULL;
        pl_ops_by_id[i] = NULL;
    }
    nops = 0;
}

unsigned pl_ops_find(const pl_http_req_t *req)
{
    for (unsigned i = 1; i <= nops; i++)
        if (pl_http_path_is(req, paths[i]))
            return i; /* the first registration of a path wins */
    return 0;
}

/* A module registered for several paths gets its worker hooks once: at
 * the id of its first registration. */
static int first_of_module(unsigned id)
{
    for (unsigned i = 1; i < id; i++)
        if (pl_ops_by_id[i] == pl_ops_by_id[id])
            return 0;
    return 1;
}

static void stop_one(pl_worker_t *w, unsigned id)
{
    if (pl_ops_by_id[id]->worker_stop && first_of_module(id))
        pl_ops_by_id[id]->worker_stop(w);
}

int pl_ops_worker_start(pl_worker_t *w)
{
    for (unsigned i = 1; i <= nops; i++) {
        const pl_ws_ops_t *ops = pl_ops_by_id[i];
        if (ops->worker_start == NULL || !first_of_module(i) || ops->worker_start(w) == 0)
            continue;
        pl_log_error("protocol layer failed to start\tmodule=%s path=%s", ops->name, paths[i]);
        while (--i >= 1) /* unwind what did start, newest first */
            stop_one(w, i);
        return -1;
    }
    return 0;
}

void pl_ops_worker_drain(pl_worker_t *w)
{
    for (unsigned i = 1; i <= nops; i++)
        if (pl_ops_by_id[i]->worker_drain && first_of_module(i))
            pl_ops_by_id[i]->worker_drain(w);
}

void pl_ops_worker_stop(pl_worker_t *w)
{
    for (unsigned i = nops; i >= 1; i--)
        stop_one(w, i);
}
