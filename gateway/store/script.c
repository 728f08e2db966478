/*
 * Lua scripts run atomically in Redis (see script.h, docs/protocol.md).
 *
 * send: dedupe by client message id, assign the next seq (asking the
 * caller for a floor when the seq key is missing), build the event JSON
 * from pre-escaped pieces, keep it in the recent zset, archive it in the
 * stream, publish the msgpack envelope, remember the cid. Because it all
 * runs in one script, publish order is seq order. With MySQL on, the
 * recent zset is trimmed only below min(seq - keep, archived) so that no
 * message the archiver has not committed leaves Redis (store/history.c). Each
 * zset member carries its origin connection as a prefix (history.h) so
 * that a fetch can still skip the sender.
 *
 * presence: heartbeat members "user|node|worker" in a zset scored by
 * expiry, and a hash user -> its member count beside it; expired members
 * are pruned (a bounded number per call) and announced as leave when they
 * were their user's last. Rooms above presence_events_max users are
 * silent: no join/leave events. Join and refresh also keep the room's seq
 * key alive (send extends it to the presence key's TTL too).
 *
 * seq: the seq guard's raise-and-keep of one seq key (chat/guard.c).
 */
#include "script.h"
#include "log.h"
#include "util.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char send_lua[] =
    "local seqk, recent, cidk, archive, archk, blockk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], "
    "KEYS[5], KEYS[6]\n"
    "local presk = KEYS[7]\n"
    "local mysql = ARGV[14] == '1'\n"
    "if ARGV[13] == '1' then\n"
    "  local prev = redis.call('GET', cidk)\n"
    "  if prev then return {'dup', prev} end\n"
    "end\n"
    /* blockk is this worker's "waiting for a floor" mark: while it stands,
     * the worker's later sends answer noseq too, even once another worker
     * has set the seq, so none overtakes the one that waits (send order). */
    "if redis.call('EXISTS', seqk) == 0 then\n"
    "  if ARGV[1] == '' then\n"
    "    redis.call('SET', blockk, '1', 'PX', 10000)\n"
    "    return {'noseq'}\n"
    "  end\n"
    "  redis.call('SET', seqk, ARGV[1], 'NX')\n"
    "  if mysql then redis.call('SET', archk, ARGV[1], 'NX') end\n"
    "elseif ARGV[1] == '' and redis.call('EXISTS', blockk) == 1 then\n"
    "  return {'noseq'}\n"
    "end\n"
    "if ARGV[1] ~= '' then redis.call('DEL', blockk) end\n"
    "local seq = redis.call('INCR', seqk)\n"
    "local t = redis.call('TIME')\n"
    "local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local seqs = string.format('%d', seq)\n"
    "local tss = string.format('%d', ts)\n"
    "local json = '{\"ev\":\"msg\",\"room\":' .. ARGV[3] .. ',\"seq\":' .. seqs .. "
    "',\"msg_id\":\"' .. ARGV[4] .. '\",\"from\":\"' .. ARGV[5] .. '\",\"text\":' .. ARGV[7] .. "
    "',\"ts\":' .. tss .. '}'\n"
    "local origin = 'o1:' .. ARGV[12] .. ':' .. ARGV[11] .. ':' .. #ARGV[10] .. ':' .. ARGV[10]\n"
    "redis.call('ZADD', recent, seqs, origin .. json)\n"
    "if mysql then\n"
    "  local cut = seq - tonumber(ARGV[8])\n"
    "  local a = tonumber(redis.call('GET', archk) or '0') or 0\n"
    "  if a < cut then cut = a end\n"
    "  if cut >= 1 then redis.call('ZREMRANGEBYSCORE', recent, '-inf', string.format('%d', cut)) "
    "end\n"
    "  redis.call('PEXPIRE', archk, ARGV[9])\n"
    "else\n"
    "  redis.call('ZREMRANGEBYRANK', recent, 0, -(tonumber(ARGV[8]) + 1))\n"
    "end\n"
    /* a room with members keeps its seq at least as long as its presence
     * key (the heartbeat extends both): history_ttl must not let the seq
     * of a quiet room with members expire and restart at 1 */
    "local keep = tonumber(ARGV[9])\n"
    "local pkeep = redis.call('PTTL', presk)\n"
    "if pkeep > keep then keep = pkeep end\n"
    "redis.call('PEXPIRE', seqk, keep)\n"
    "redis.call('PEXPIRE', recent, ARGV[9])\n"
    /* KEYS[4] "" = archive off: no stream (script.h) */
    "if archive ~= '' then redis.call('XADD', archive, '*', 'room', ARGV[2], 'seq', seqs, "
    "'msg_id', ARGV[4], 'from', ARGV[5], 'text', ARGV[6], 'ts', tss) end\n"
    "local env = cmsgpack.pack({1, 'msg', ARGV[2], ARGV[10], tonumber(ARGV[11]), "
    "tonumber(ARGV[12]), seq, json})\n"
    "for i = 15, #ARGV do redis.call('PUBLISH', ARGV[i], env) end\n"
    "local res = seqs .. ' ' .. tss .. ' ' .. ARGV[4]\n"
    "if ARGV[13] == '1' then redis.call('SET', cidk, res, 'PX', 300000) end\n"
    "return {'ok', res}\n";

/* KEYS[1] is the zset (member "user|node|worker", score = expiry), KEYS[2]
 * the hash user -> how many of its members the zset holds. The hash makes
 * "first / last member of a user" an O(1) HINCRBY instead of a scan of the
 * live members, so join, leave and pruning cost O(log n) per member. */
static const char presence_lua[] =
    "local key, ukey = KEYS[1], KEYS[2]\n"
    "local op = ARGV[1]\n"
    "local emax = tonumber(ARGV[10])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local nows = string.format('%d', now)\n"
    "local exps = string.format('%d', now + tonumber(ARGV[2]))\n"
    "local quiet = 0\n"
    "local function user_of(m) return string.match(m, '^([^|]*)|') end\n"
    /* n: the room's users counting u. Above emax the room is silent (its
     * members read counts with list): that bounds the events of filling a
     * room of n members to O(emax^2) instead of O(n^2). */
    "local function announce(u, state, node, worker, conn, n)\n"
    "  if n > emax then quiet = quiet + 1 return end\n"
    "  local json = '{\"ev\":\"presence\",\"room\":' .. ARGV[4] .. ',\"user\":\"' .. u .. "
    "'\",\"state\":\"' .. state .. '\"}'\n"
    "  redis.call('PUBLISH', ARGV[5], cmsgpack.pack({1, 'presence', ARGV[3], node, worker, "
    "conn, 0, json}))\n"
    "end\n"
    /* Counts follow the zset: a member added counts +1 for its user, one
     * removed -1; the user's last one gone is its leave. */
    "local function removed(u, node, worker, conn)\n"
    "  if not u then return end\n"
    "  if redis.call('HINCRBY', ukey, u, -1) <= 0 then\n"
    "    local n = redis.call('HLEN', ukey)\n"
    "    redis.call('HDEL', ukey, u)\n"
    "    announce(u, 'leave', node, worker, conn, n)\n"
    "  end\n"
    "end\n"
    "local function added(u)\n"
    "  if u then return redis.call('HINCRBY', ukey, u, 1) end\n"
    "  return 0\n"
    "end\n"
    /* The two keys live and expire together; if one is gone (a key written
     * by an older gateway, or one outlived the other by a millisecond of
     * TTL), rebuild the hash from the zset once. */
    "if redis.call('EXISTS', key) == 0 then\n"
    "  redis.call('DEL', ukey)\n"
    "elseif redis.call('EXISTS', ukey) == 0 then\n"
    "  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do added(user_of(m)) end\n"
    "end\n"
    /* Prune at most 1000 expired members per call (the rest on the next
     * calls: every worker's heartbeat makes one), so no call blocks Redis
     * for long however many members a dead node left behind. */
    "local dead = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. nows, 'LIMIT', 0, 1000)\n"
    "for _, m in ipairs(dead) do\n"
    "  redis.call('ZREM', key, m)\n"
    "  removed(user_of(m), '', -1, 0)\n"
    "end\n"
    "local node, worker, conn = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    /* join and refresh keep the room's seq key (KEYS[3]) alive as long as
     * the presence key: a room with members never loses its seq to a TTL */
    "local function keep_seq()\n"
    "  local pt = redis.call('PTTL', KEYS[3])\n"
    "  if pt >= 0 and pt < tonumber(ARGV[9]) then redis.call('PEXPIRE', KEYS[3], ARGV[9]) end\n"
    "end\n"
    "if op == 'join' then\n"
    "  if redis.call('ZADD', key, exps, ARGV[12]) == 1 and added(ARGV[11]) == 1 then\n"
    "    announce(ARGV[11], 'join', node, worker, conn, redis.call('HLEN', ukey))\n"
    "  end\n"
    "  redis.call('PEXPIRE', key, ARGV[9])\n"
    "  redis.call('PEXPIRE', ukey, ARGV[9])\n"
    "  keep_seq()\n"
    "elseif op == 'leave' then\n"
    "  if redis.call('ZREM', key, ARGV[12]) == 1 then removed(ARGV[11], node, worker, conn) end\n"
    "elseif op == 'refresh' then\n"
    "  for i = 11, #ARGV do\n"
    "    if redis.call('ZADD', key, exps, ARGV[i]) == 1 then added(user_of(ARGV[i])) end\n"
    "  end\n"
    "  redis.call('PEXPIRE', key, ARGV[9])\n"
    "  redis.call('PEXPIRE', ukey, ARGV[9])\n"
    "  keep_seq()\n"
    "elseif op == 'list' then\n"
    /* At most ARGV[11] users, distinct (HSCAN may repeat a field), read in
     * bounded HSCAN steps; the count is the whole room's. */
    "  local max, users, seen, cur = tonumber(ARGV[11]), {}, {}, '0'\n"
    "  repeat\n"
    "    local r = redis.call('HSCAN', ukey, cur, 'COUNT', 1000)\n"
    "    cur = r[1]\n"
    "    for i = 1, #r[2], 2 do\n"
    "      local u = r[2][i]\n"
    "      if #users < max and not seen[u] then seen[u] = true users[#users + 1] = u end\n"
    "    end\n"
    "  until cur == '0' or #users >= max\n"
    "  return {redis.call('HLEN', ukey), users, quiet}\n"
    "end\n"
    "return quiet\n";

/* The seq guard (chat/guard.c): raise a room's seq key to at least a
 * floor and keep it alive at least ttl ms; never lowers either. A missing
 * key is created at the floor only when asked (without MySQL; with it the
 * floor must include MySQL's MAX(seq), and the archived marker is set to
 * that when missing, as the send script's floor path does). Returns
 * {raised (0/1), the seq before (-1 = missing)}. */
static const char seq_lua[] =
    "local seqk, archk = KEYS[1], KEYS[2]\n"
    "local floor, ttl = tonumber(ARGV[1]) or 0, tonumber(ARGV[2])\n"
    "local cur = redis.call('GET', seqk)\n"
    "if not cur then\n"
    "  if ARGV[3] ~= '1' or floor <= 0 then return {0, -1} end\n"
    "  redis.call('SET', seqk, ARGV[1], 'PX', ARGV[2])\n"
    "  if ARGV[4] ~= '' then redis.call('SET', archk, ARGV[4], 'NX', 'PX', ARGV[2]) end\n"
    "  return {1, -1}\n"
    "end\n"
    "local c = tonumber(cur) or 0\n"
    "local pt = redis.call('PTTL', seqk)\n"
    "local raised = 0\n"
    "if c < floor then redis.call('SET', seqk, ARGV[1]) raised = 1 end\n"
    /* SET dropped the TTL; a key without one (-1) stays without */
    "if pt >= 0 then\n"
    "  if pt < ttl then pt = ttl end\n"
    "  redis.call('PEXPIRE', seqk, pt)\n"
    "end\n"
    "return {raised, c}\n";

/* archstat: KEYS[1] the archive stream; replies {XLEN, age in ms of the
 * oldest entry some consumer group has not acknowledged, by Redis's clock}.
 * Per group that is its first pending entry, or when none is pending the
 * first one after its last-delivered id; with no group at all (no archiver
 * ever ran) the stream's first entry. Reads only; O(groups). */
static const char archstat_lua[] =
    "local s = KEYS[1]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if redis.call('TYPE', s)['ok'] ~= 'stream' then return {0, 0} end\n"
    "local oldest\n"
    "local function seen(id)\n"
    "  local ms = id and tonumber(string.match(id, '^(%d+)'))\n"
    "  if ms and (not oldest or ms < oldest) then oldest = ms end\n"
    "end\n"
    "local function first_after(from)\n"
    "  local r = redis.call('XRANGE', s, from, '+', 'COUNT', 1)\n"
    "  if r[1] then seen(r[1][1]) end\n"
    "end\n"
    "local groups = redis.call('XINFO', 'GROUPS', s)\n"
    "if #groups == 0 then first_after('-') end\n"
    "for _, g in ipairs(groups) do\n"
    "  local f = {}\n"
    "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "  local p = redis.call('XPENDING', s, f['name'])\n"
    "  if p[1] > 0 then seen(p[2]) else first_after('(' .. f['last-delivered-id']) end\n"
    "end\n"
    "local age = 0\n"
    "if oldest and now > oldest then age = now - oldest end\n"
    "return {redis.call('XLEN', s), age}\n";

/* A user's live connections in the cluster: a zset of "<origin>|<conn>"
 * scored by expiry (Redis's clock, so nodes' clocks need not agree). add
 * drops expired entries (a dead node's age out) and refuses a new one
 * past the maximum (0 = refused); refresh extends (and re-adds, e.g. after
 * a Redis restart) this worker's entries; del removes one. */
static const char userconn_lua[] =
    "local key = KEYS[1]\n"
    "local op, ttl = ARGV[1], tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local exps = string.format('%d', now + ttl)\n"
    "if op == 'del' then\n"
    "  return redis.call('ZREM', key, ARGV[4])\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now))\n"
    "if op == 'add' then\n"
    "  local max = tonumber(ARGV[3])\n"
    "  if max > 0 and not redis.call('ZSCORE', key, ARGV[4]) and "
    "redis.call('ZCARD', key) >= max then\n"
    "    return 0\n"
    "  end\n"
    "  redis.call('ZADD', key, exps, ARGV[4])\n"
    "else\n"
    "  for i = 4, #ARGV do redis.call('ZADD', key, exps, ARGV[i]) end\n"
    "end\n"
    "redis.call('PEXPIRE', key, ttl)\n"
    "return 1\n";

static const char *const sources[PL_SCRIPT_COUNT] = {send_lua, presence_lua, seq_lua, archstat_lua,
                                                     userconn_lua};
static char shas[PL_SCRIPT_COUNT][41];

const char *pl_script_sha(pl_script_id_t id)
{
    if (shas[id][0] == '\0') {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)sources[id], strlen(sources[id]), d);
        pl_hex(d, sizeof(d), shas[id]);
    }
    return shas[id];
}

/* A call in flight: the full argv is kept so NOSCRIPT can be retried with
 * EVAL. argv[0] is "EVALSHA", argv[1] the sha, argv[2] the key count. */
typedef struct call {
    pl_bus_t *bus;
    pl_script_id_t id;
    pl_bus_reply_fn fn;
    void *arg;
    int argc;
    char **argv;
    size_t *lens;
    int retried;
} call_t;

static void call_free(call_t *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->lens);
    free(c);
}

static void on_script_reply(void *arg, redisReply *r)
{
    call_t *c = arg;
    if (r && r->type == REDIS_REPLY_ERROR && !c->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        c->retried = 1;
        const char **argv = pl_xmalloc(c->argc * sizeof(*argv));
        size_t *lens = pl_xmalloc(c->argc * sizeof(*lens));
        for (int i = 0; i < c->argc; i++) {
            argv[i] = c->argv[i];
            lens[i] = c->lens[i];
        }
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = sources[c->id];
        lens[1] = strlen(sources[c->id]);
        int rc = pl_bus_command(c->bus, on_script_reply, c, c->argc, argv, lens);
        free(argv);
        free(lens);
        if (rc == 0)
            return;
        r = NULL;
    }
    c->fn(c->arg, r);
    call_free(c);
}

static void on_load(void *arg, redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR)
        pl_log_error("redis SCRIPT LOAD failed\terror=\"%s\"", r->str);
}

void pl_script_load_all(pl_bus_t *bus)
{
    for (int id = 0; id < PL_SCRIPT_COUNT; id++) {
        const char *argv[] = {"SCRIPT", "LOAD", sources[id]};
        size_t lens[] = {6, 4, strlen(sources[id])};
        (void)pl_bus_command(bus, on_load, NULL, 3, argv, lens);
    }
}

int pl_script_call(pl_bus_t *bus, pl_script_id_t id, int nkeys, const char **keys, int nargs,
                   const char **args, const size_t *arglens, pl_bus_reply_fn fn, void *arg)
{
    if (!pl_bus_ready(bus))
        return -1;
    call_t *c = pl_xcalloc(1, sizeof(*c));
    c->bus = bus;
    c->id = id;
    c->fn = fn;
    c->arg = arg;
    c->argc = 3 + nkeys + nargs;
    c->argv = pl_xmalloc(c->argc * sizeof(*c->argv));
    c->lens = pl_xmalloc(c->argc * sizeof(*c->lens));
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    c->argv[0] = pl_xstrdup("EVALSHA");
    c->argv[1] = pl_xstrdup(pl_script_sha(id));
    c->argv[2] = pl_xstrdup(nk);
    for (int i = 0; i < 3; i++)
        c->lens[i] = strlen(c->argv[i]);
    for (int i = 0; i < nkeys; i++) {
        c->argv[3 + i] = pl_xstrdup(keys[i]);
        c->lens[3 + i] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        size_t n = arglens ? arglens[i] : strlen(args[i]);
        char *p = pl_xmalloc(n + 1);
        memcpy(p, args[i], n);
        p[n] = '\0';
        c->argv[3 + nkeys + i] = p;
        c->lens[3 + nkeys + i] = n;
    }
    if (pl_bus_command(bus, on_script_reply, c, c->argc, (const char **)c->argv, c->lens) < 0) {
        call_free(c);
        return -1;
    }
    return 0;
}
