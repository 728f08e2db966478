"""
Recovery: join with since (no gap, no duplicate against live traffic,
recovered:false once trimmed) and a Redis restart during traffic: every
acknowledged message reaches every connected member, sends during the
outage get unavailable at once.
"""
import asyncio
import time

import pytest

from lib import pl

from lib.chatlib import FAST, login, uniq


async def test_join_since(gateway):
    gw = gateway(**FAST)
    room = uniq()
    alice = await login(gw, "rec-alice")
    await alice.ok("join", room=room)
    for i in range(1, 11):
        await alice.ok("send", room=room, text=f"m{i}")
    bob = await login(gw, "rec-bob")
    r = await bob.ok("join", room=room, since=3)
    assert r["seq"] == 10 and r["recovered"] is True
    ms = bob.drain()
    assert [m["seq"] for m in ms if m["ev"] == "msg"] == list(range(4, 11))
    # since at the head: nothing to recover
    carol = await login(gw, "rec-carol")
    r = await carol.ok("join", room=room, since=10)
    assert r["seq"] == 10 and r["recovered"] is True
    await carol.no_event(0.3, ev="msg")
    # live continues after the recovered ones
    await alice.ok("send", room=room, text="m11")
    assert (await bob.event(ev="msg"))["seq"] == 11
    assert (await carol.event(ev="msg"))["seq"] == 11
    for c in (alice, bob, carol):
        await c.close()


async def test_join_since_during_live_traffic(gateway):
    """Recovery and live messages interleave on the server: the joiner
    still sees 1..N exactly once, in order."""
    a = gateway(node_id="rec-a", **FAST)
    b = gateway(node_id="rec-b", **FAST)
    room = uniq()
    sender = await login(a, "rl-sender")
    await sender.ok("join", room=room)
    for i in range(50):
        await sender.ok("send", room=room, text=f"pre{i}")

    async def pump():
        for i in range(300):
            await sender.ok("send", room=room, text=f"live{i}")

    task = asyncio.get_running_loop().create_task(pump())
    joiners = []
    for k in range(4):
        await asyncio.sleep(0.05)
        c = await login(b if k % 2 else a, f"rl-joiner{k}")
        r = await c.ok("join", room=room, since=0)
        assert r["recovered"] is True
        joiners.append(c)
    await task
    for c in joiners:
        ms = await c.msgs(350, timeout=20, room=room)
        assert [m["seq"] for m in ms] == list(range(1, 351))
        await c.no_event(0.2, ev="msg")
    for c in joiners + [sender]:
        await c.close()


async def test_recovered_false_when_trimmed(gateway):
    gw = gateway(history_recent=5, **FAST)
    room = uniq()
    alice = await login(gw, "tr-alice")
    await alice.ok("join", room=room)
    for i in range(20):
        await alice.ok("send", room=room, text=f"m{i}")
    bob = await login(gw, "tr-bob")
    r = await bob.ok("join", room=room, since=2)
    assert r["recovered"] is False and r["seq"] == 20
    assert [m["seq"] for m in bob.drain() if m["ev"] == "msg"] == list(range(16, 21))
    carol = await login(gw, "tr-carol")
    r = await carol.ok("join", room=room, since=15)
    assert r["recovered"] is True
    assert [m["seq"] for m in carol.drain() if m["ev"] == "msg"] == list(range(16, 21))
    for c in (alice, bob, carol):
        await c.close()


@pytest.mark.parametrize("mode", ["room", "dm", "room-aof"])
async def test_redis_restart_during_traffic(gateway, fresh_redis, workdir, mode):
    if mode.endswith("-aof"):
        # Redis that keeps its data across the restart (seq keys survive)
        fresh_redis.kill()
        fresh_redis = pl.Redis(workdir + "/redis-aof", appendonly=True).start()
        mode = mode[:-4]
    a = gateway(node_id="rr-a", redis_url=fresh_redis.url, **FAST)
    b = gateway(node_id="rr-b", redis_url=fresh_redis.url, **FAST)
    room = uniq()
    sender = await login(a, "rr-sender")
    if mode == "room":
        members = [await login(a, "rr-m1"), await login(b, "rr-m2"), await login(b, "rr-m3")]
        for c in [sender] + members:
            await c.ok("join", room=room)
        cmd = dict(op="send", room=room)
    else:
        # the recipient on both nodes, and the sender's other device
        members = [await login(a, "rr-peer"), await login(b, "rr-peer"), await login(b, "rr-sender")]
        cmd = dict(op="dm", to="rr-peer")
        room = "dm:rr-peer:rr-sender"

    acked = []
    unavailable = 0
    stop = False

    async def pump():
        nonlocal unavailable
        i = 0
        while not stop:
            fields = {k: v for k, v in cmd.items() if k != "op"}
            r = await sender.cmd(cmd["op"], text=f"t{i}", timeout=10, **fields)
            i += 1
            if r["ok"]:
                acked.append(r["msg_id"])
            else:
                assert r["error"] == "unavailable", r
                unavailable += 1
            await asyncio.sleep(0.005)

    task = asyncio.get_running_loop().create_task(pump())
    await asyncio.sleep(1.0)
    before = len(acked)
    fresh_redis.stop()
    t0 = time.monotonic()
    # during the outage sends fail fast with unavailable (never hang)
    fields = {k: v for k, v in cmd.items() if k != "op"}
    r = await sender.cmd(cmd["op"], text="during", timeout=3, **fields)
    assert r["ok"] is False and r["error"] == "unavailable" and time.monotonic() - t0 < 3
    await asyncio.sleep(1.0)
    fresh_redis.start()
    # traffic resumes after the gateways reconnect
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(acked) < before + 100:
        await asyncio.sleep(0.1)
    stop = True
    await task
    assert len(acked) >= before + 100, (before, len(acked))
    assert unavailable > 0
    for c in members:
        got = []
        deadline = time.monotonic() + 15
        want = set(acked)
        while not want.issubset({m["msg_id"] for m in got}) and time.monotonic() < deadline:
            try:
                got += await c.msgs(1, timeout=1, room=room)
            except AssertionError:
                pass
        ids = [m["msg_id"] for m in got]
        missing = want - set(ids)
        assert not missing, f"{c.user} missed {len(missing)} of {len(want)} acked messages"
        assert len(ids) == len(set(ids)), "duplicates delivered"
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for c in [sender] + members:
        await c.close()
    fresh_redis.kill()


async def test_hung_redis_gives_unavailable(gateway, fresh_redis):
    import os
    import signal
    gw = gateway(redis_url=fresh_redis.url)
    room = uniq()
    c = await login(gw, "hung")
    await c.ok("join", room=room)
    await c.ok("send", room=room, text="before")
    os.kill(fresh_redis.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = await c.cmd("send", room=room, text="while hung", timeout=10)
        assert r["ok"] is False and r["error"] == "unavailable"
        assert time.monotonic() - t0 < 8
    finally:
        os.kill(fresh_redis.proc.pid, signal.SIGCONT)
    # recovers once Redis answers again
    deadline = time.monotonic() + 10
    while True:
        r = await c.cmd("send", room=room, text="after")
        if r["ok"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert r["ok"] is True, r
    await c.close()


async def test_redis_password_in_url(gateway, fresh_redis):
    fresh_redis.cli("CONFIG", "SET", "requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{fresh_redis.port}/0"
    a = gateway(node_id="pw-a", redis_url=url)
    b = gateway(node_id="pw-b", redis_url=url)
    room = uniq()
    alice = await login(a, "pw-alice")
    bob = await login(b, "pw-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    r = await alice.ok("send", room=room, text="authed")
    m = await bob.event(ev="msg")
    assert m["seq"] == r["seq"] and m["text"] == "authed"
    await alice.close()
    await bob.close()


async def test_dm_join_since(gateway):
    gw = gateway(**FAST)
    alice = await login(gw, "dms-alice")
    bob = await login(gw, "dms-bob")
    for i in range(1, 6):
        await alice.ok("dm", to="dms-bob", text=f"d{i}")
    room = "dm:dms-alice:dms-bob"
    assert [m["seq"] for m in await bob.msgs(5)] == [1, 2, 3, 4, 5]
    bob2 = await login(gw, "dms-bob")
    r = await bob2.ok("join", room=room, since=2)
    assert r["recovered"] is True and r["seq"] == 5
    assert [m["seq"] for m in bob2.drain() if m["ev"] == "msg"] == [3, 4, 5]
    await alice.ok("dm", to="dms-bob", text="d6")
    assert [m["seq"] for m in await bob2.msgs(1)] == [6]
    await bob2.no_event(0.3, ev="msg")  # once, though joined and on the user channel
    for c in (alice, bob, bob2):
        await c.close()
