"""
Bounded work for every request (issue 8, "Bounded work"): join recovery
replays at most recover_max messages and send_buffer_limit / 4 bytes, past
that it answers recovered:false at once and replays nothing; history
requests waiting for a stalled MySQL and Redis commands waiting for a
stalled Redis are bounded and the rest answer unavailable at once. Each
refusal shows in parley_limit_rejections_total{limit=...}.
"""
import asyncio
import json
import os
import signal
import time

from lib.chatlib import FAST, closeall, login, metric, uniq

CTL = "\x01" * 4096  # 4 KiB of control characters: ~24 KB once escaped as \u0001


def limit_count(gw, name):
    return metric(gw, "parley_limit_rejections_total", limit=name) or 0


async def send_many(c, op, n, timeout=60, **fields):
    """Sends n commands without waiting; returns the replies in order."""
    loop = asyncio.get_running_loop()
    futs = []
    for _ in range(n):
        c.next_id += 1
        f = loop.create_future()
        c.replies[c.next_id] = f
        futs.append(f)
        await c.ws.send(json.dumps(dict(op=op, id=c.next_id, **fields)))
    return await asyncio.wait_for(asyncio.gather(*futs), timeout)


async def test_join_since_past_byte_budget_is_not_recovered(gateway):
    """The repro: 180 messages of 4 KiB control characters (escaped to
    ~24 KB each, 4.3 MB in all, over the 4 MB send_buffer_limit) made every
    join with since:0 close 1013 before a message arrived. Now: ok at
    once, recovered:false, the room's seq, nothing replayed, the connection
    stays and live messages follow; history pages the rest."""
    gw = gateway(**FAST)
    room = uniq("big")
    alice = await login(gw, "rb-alice")
    await alice.ok("join", room=room)
    replies = await send_many(alice, "send", 180, room=room, text=CTL)
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
    before = limit_count(gw, "recover_max")
    head = 180
    for attempt in range(3):  # the client's retry gets the same prompt answer
        bob = await login(gw, f"rb-bob{attempt}")
        t0 = time.monotonic()
        r = await bob.ok("join", room=room, since=0)
        assert time.monotonic() - t0 < 2
        assert r["recovered"] is False and r["seq"] == head, r
        await bob.no_event(0.5, ev="msg")
        assert not bob.closed.is_set(), bob.close_info
        await alice.ok("send", room=room, text="live")
        head += 1
        m = await bob.event(ev="msg")
        assert m["seq"] == head and m["text"] == "live"
        # the client pages back with history instead
        h = await bob.ok("history", room=room, limit=20)
        assert [x["seq"] for x in h["messages"]] == list(range(head - 19, head + 1))
        await bob.close()
    assert limit_count(gw, "recover_max") >= before + 3
    await alice.close()


async def test_join_since_within_bounds_recovers(gateway):
    """Within both bounds recovery is complete; one message over
    recover_max and it is recovered:false with nothing replayed."""
    gw = gateway(recover_max=10, **FAST)
    room = uniq("rm")
    alice = await login(gw, "rm-alice")
    await alice.ok("join", room=room)
    for i in range(1, 16):
        await alice.ok("send", room=room, text=CTL if i % 2 else f"m{i}")
    bob = await login(gw, "rm-bob")
    r = await bob.ok("join", room=room, since=5)  # 10 missing: exactly recover_max
    assert r["recovered"] is True and r["seq"] == 15
    ms = await bob.msgs(10, room=room)
    assert [m["seq"] for m in ms] == list(range(6, 16))
    assert ms[0]["text"] == "m6" and ms[1]["text"] == CTL
    carol = await login(gw, "rm-carol")
    r = await carol.ok("join", room=room, since=4)  # 11 missing
    assert r["recovered"] is False and r["seq"] == 15
    await carol.no_event(0.4, ev="msg")
    await alice.ok("send", room=room, text="after")
    assert (await carol.event(ev="msg"))["seq"] == 16
    assert (await bob.event(ev="msg"))["seq"] == 16
    await closeall(alice, bob, carol)


async def test_history_wait_bound_with_mysql_stalled(gateway, mariadb, archiver, fresh_database):
    """History requests that need MySQL wait for it, each holding its Redis
    part. With mariadbd stopped (SIGSTOP) at most history_wait_max wait;
    the rest answer unavailable at once, and the worker keeps serving."""
    archiver.ok("migrate", mysql_url=fresh_database.url)
    gw = gateway(workers=1, mysql_url=fresh_database.url, history_wait_max=4, **FAST)
    room = uniq("hw")
    c = await login(gw, "hw-user")
    await c.ok("join", room=room)
    for i in range(3):
        await c.ok("send", room=room, text=f"m{i}")
    # a room Redis holds nothing of: every page needs the MySQL part
    empty = uniq("hw-empty")
    r = await c.ok("history", room=empty, limit=50)
    assert r["messages"] == [] and r["more"] is False
    before = limit_count(gw, "history_wait_max")
    pid = mariadb.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        futs, t0 = [], time.monotonic()
        for _ in range(20):
            c.next_id += 1
            f = loop.create_future()
            c.replies[c.next_id] = f
            futs.append(f)
            await c.ws.send(json.dumps({"op": "history", "id": c.next_id, "room": empty,
                                        "limit": 50}))
        # the 16 over the bound answer at once, refused by the bound (one
        # of the 4 let through may also answer early, e.g. from a pool
        # connection that was mid-reply when mariadbd stopped: not counted)
        done, _ = await asyncio.wait(futs, timeout=1.5)
        quick = [f.result() for f in done]
        refused = [x for x in quick if x["ok"] is False and x["error"] == "unavailable"
                   and "waiting" in x["message"]]
        early = len(quick) - len(refused)  # answered by MySQL: each frees a slot
        assert len(quick) >= 16 and len(refused) >= 16 - early, quick
        # other commands keep being served meanwhile
        await c.ok("send", room=room, text="meanwhile")
        assert time.monotonic() - t0 < 3
        rest = await asyncio.wait_for(asyncio.gather(*futs), 30)
        assert all(x["ok"] is True or x["error"] == "unavailable" for x in rest), rest
    finally:
        os.kill(pid, signal.SIGCONT)
    assert limit_count(gw, "history_wait_max") >= before + len(refused)
    # MySQL back: history with the older part works again
    deadline = time.monotonic() + 20
    while True:
        r = await c.cmd("history", room=empty, limit=50)
        if r["ok"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert r["ok"] is True and r["messages"] == [], r
    await c.close()


async def test_redis_command_queue_bound(gateway, fresh_redis):
    """Commands waiting for a stalled Redis: at most redis_queue_max per
    worker, the rest answer unavailable at once."""
    gw = gateway(workers=1, redis_url=fresh_redis.url, redis_queue_max=16, **FAST)
    room = uniq("rq")
    c = await login(gw, "rq-user")
    await c.ok("join", room=room)
    await c.ok("send", room=room, text="before")
    before = limit_count(gw, "redis_queue_max")
    os.kill(fresh_redis.proc.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        futs = []
        for i in range(60):
            c.next_id += 1
            f = loop.create_future()
            c.replies[c.next_id] = f
            futs.append(f)
            await c.ws.send(json.dumps({"op": "send", "id": c.next_id, "room": room,
                                        "text": f"t{i}"}))
        done, _ = await asyncio.wait(futs, timeout=1.5)
        quick = [f.result() for f in done]
        assert len(quick) >= 60 - 16, len(quick)
        assert all(x["ok"] is False and x["error"] == "unavailable" for x in quick)
    finally:
        os.kill(fresh_redis.proc.pid, signal.SIGCONT)
    await asyncio.wait_for(asyncio.gather(*futs), 20)
    assert limit_count(gw, "redis_queue_max") >= before + 60 - 16
    deadline = time.monotonic() + 15
    while True:
        r = await c.cmd("send", room=room, text="after", timeout=10)
        if r["ok"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert r["ok"] is True, r
    await c.close()
