"""
No silent gaps (issue 13): a worker that falls behind Redis's pub/sub
output-buffer limit refills its members from the recent zset and MariaDB,
or tells them with {"ev":"gap","room","from","to"}.

Setup of every test: two nodes with one worker each on their own Redis
(fresh_redis), Bob joined on node 2, Alice sending from node 1. Node 2's
worker is stopped (SIGSTOP) while Alice sends 4 KB messages until Redis
closes the worker's subscription link for exceeding its output-buffer
limit. To keep the tests fast the test Redis's limit is lowered from the
default `pubsub 32mb 8mb 60` with CONFIG SET client-output-buffer-limit
"pubsub 256kb 0 0" (the same mechanism, reached after a few hundred
messages instead of ~9,000); the test sends in batches and stops as soon
as CLIENT LIST shows the stopped worker's subscription gone. The last test
keeps the default limit: Redis then discards ~8,000 queued messages, far
past recover_max (at most 1000), which the refill reads back in chunks of
recover_max messages (and send_buffer_limit / 4 bytes), paced by the
members' output queues: every message arrives once, in order, no gap. A gap
event is left for what is stored nowhere, or for what lies past refill_max.
"""
import asyncio
import json
import os
import signal
import time

from lib import pl
from lib.chatlib import FAST, closeall, login, metric, uniq

TEXT = "x" * 4000


def limit_count(gw, name):
    return metric(gw, "parley_limit_rejections_total", limit=name) or 0


def pubsub_clients(redis):
    return len([ln for ln in redis.cli("CLIENT", "LIST", "TYPE", "pubsub").splitlines() if ln])


async def send_batch(c, room, n, timeout=60):
    loop = asyncio.get_running_loop()
    futs = []
    for _ in range(n):
        c.next_id += 1
        f = loop.create_future()
        c.replies[c.next_id] = f
        futs.append(f)
        await c.ws.send(json.dumps({"op": "send", "id": c.next_id, "room": room, "text": TEXT}))
    rs = await asyncio.wait_for(asyncio.gather(*futs), timeout)
    assert all(r["ok"] for r in rs), [r for r in rs if not r["ok"]][:3]
    return [r["seq"] for r in rs]


async def stall_node2(redis, gw2, alice, room, max_msgs=5000):
    """Stops node 2's worker and sends until Redis dropped its subscription
    link. Returns (worker pid, seqs acked). The worker stays stopped."""
    redis.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 256kb 0 0")
    base = pubsub_clients(redis)
    (pid,) = gw2.worker_pids()
    os.kill(pid, signal.SIGSTOP)
    seqs = []
    while len(seqs) < max_msgs:
        seqs += await send_batch(alice, room, 100)
        if pubsub_clients(redis) < base:
            print(f"subscription dropped after {len(seqs)} messages")
            return pid, seqs
    os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"the subscription link was not dropped after {len(seqs)} messages")


async def stream_of(c, room, last, timeout=60):
    """Bob's msg and gap events of room until seq `last` is covered."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"stream not complete: {summary(out)[-6:]}")
        try:
            m = await asyncio.wait_for(c.events.get(), left)
        except asyncio.TimeoutError:
            continue
        if m.get("room") != room or m.get("ev") not in ("msg", "gap"):
            continue
        out.append(m)
        if (m["ev"] == "msg" and m["seq"] >= last) or (m["ev"] == "gap" and m["to"] >= last):
            return out


def summary(events):
    """Runs of consecutive msg seqs as (first, last), gaps as ("gap", from, to)."""
    out = []
    for m in events:
        if m["ev"] == "gap":
            out.append(("gap", m["from"], m["to"]))
        elif out and out[-1][0] != "gap" and out[-1][1] + 1 == m["seq"]:
            out[-1] = (out[-1][0], m["seq"])
        else:
            out.append((m["seq"], m["seq"]))
    return out


def check_covered(events, first, last):
    """Every seq first..last is either delivered once or inside one gap, in
    order: never a silent jump. Returns (delivered seqs, gaps)."""
    expect, seqs, gaps = first, [], []
    for m in events:
        if m["ev"] == "msg":
            assert m["seq"] == expect, f"expected seq {expect}, got {summary(events)}"
            seqs.append(m["seq"])
            expect += 1
        else:
            assert m["from"] == expect and m["to"] >= m["from"], (expect, m)
            gaps.append((m["from"], m["to"]))
            expect = m["to"] + 1
    assert expect == last + 1, (expect, last)
    return seqs, gaps


async def two_nodes(gateway, redis, room, **opts):
    o = dict(FAST)
    o.update(opts)
    n1 = gateway(node_id="gap-n1", workers=1, redis_url=redis.url, **o)
    n2 = gateway(node_id="gap-n2", workers=1, redis_url=redis.url, **o)
    alice = await login(n1, "gap-alice")
    bob = await login(n2, "gap-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    return n1, n2, alice, bob


def wait_archived(db, room, n, timeout=60):
    pl.wait_for(lambda: int(db.scalar(f"SELECT COUNT(*) FROM messages WHERE room = '{room}'")) >= n,
                timeout, what=f"archiver to store {n} messages of {room}")


async def run_stall(gateway, archiver, fresh_redis, db, caught_up):
    archiver.ok("migrate", mysql_url=db.url)
    room = uniq("stall")
    # history_recent small: once archived, Redis trims to the last 50 and
    # most of a refill must come from MariaDB
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, mysql_url=db.url,
                                     history_recent=50)
    arch = archiver("run", redis_url=fresh_redis.url, mysql_url=db.url) if caught_up else None
    seqs = await send_batch(alice, room, 10)
    got = await bob.msgs(10, room=room)
    assert [m["seq"] for m in got] == seqs
    pid, more = await stall_node2(fresh_redis, n2, alice, room)
    seqs += more
    last = seqs[-1]
    if caught_up:
        wait_archived(db, room, last)
        seqs += await send_batch(alice, room, 1)  # trims Redis below the archived marker
        last = seqs[-1]
        wait_archived(db, room, last)
        assert int(fresh_redis.cli("ZCARD", f"parley:{{{room}}}:recent")) < last - 10
    os.kill(pid, signal.SIGCONT)
    events = await stream_of(bob, room, last)
    delivered, gaps = check_covered(events, 11, last)
    assert gaps == [] and delivered == list(range(11, last + 1))
    await alice.ok("send", room=room, text="live")
    m = await bob.event(ev="msg", room=room)
    assert m["seq"] == last + 1
    await bob.no_event(0.5, ev="msg")
    mysql = (metric(n2, "parley_refill_messages_total", source="mysql") or 0)
    redis_n = (metric(n2, "parley_refill_messages_total", source="redis") or 0)
    assert mysql + redis_n > 0  # the subscription was really lost and refilled
    if caught_up:
        assert mysql > 0
        arch.stop()
    assert (metric(n2, "parley_gap_events_total") or 0) == 0
    await closeall(alice, bob)


async def test_stalled_worker_refilled_archiver_caught_up(gateway, archiver, fresh_redis,
                                                          fresh_database):
    await run_stall(gateway, archiver, fresh_redis, fresh_database, caught_up=True)


async def test_stalled_worker_refilled_archiver_behind(gateway, archiver, fresh_redis,
                                                       fresh_database):
    await run_stall(gateway, archiver, fresh_redis, fresh_database, caught_up=False)


async def test_stalled_worker_past_refill_max_gets_one_gap(gateway, archiver, fresh_redis,
                                                           fresh_database):
    archiver.ok("migrate", mysql_url=fresh_database.url)
    room = uniq("stallgap")
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, mysql_url=fresh_database.url,
                                     recover_max=20, refill_max=40)
    before = limit_count(n2, "refill_max")
    pid, seqs = await stall_node2(fresh_redis, n2, alice, room)
    last = seqs[-1]
    os.kill(pid, signal.SIGCONT)
    events = await stream_of(bob, room, last)
    delivered, gaps = check_covered(events, 1, last)
    # what reached the worker before Redis dropped it, then two chunks of
    # recover_max (refill_max = 40 messages), then one gap up to the room's
    # seq at the refill
    assert len(gaps) == 1 and gaps[0][1] == last and delivered == list(range(1, gaps[0][0]))
    assert gaps[0][1] - gaps[0][0] + 1 > 20
    mysql = (metric(n2, "parley_refill_messages_total", source="mysql") or 0)
    redis_n = (metric(n2, "parley_refill_messages_total", source="redis") or 0)
    assert mysql + redis_n == 40
    assert limit_count(n2, "refill_max") == before + 1
    await alice.ok("send", room=room, text="live")
    m = await bob.event(ev="msg", room=room)
    assert m["seq"] == last + 1
    await bob.no_event(0.5, ev="msg")
    assert (metric(n2, "parley_gap_events_total") or 0) == 1
    # the client pages the gap with history
    h = await bob.ok("history", room=room, before=gaps[0][0] + 5, limit=5)
    assert [x["seq"] for x in h["messages"]] == list(range(gaps[0][0], gaps[0][0] + 5))
    await closeall(alice, bob)


async def test_redis_only_trimmed_gives_gap(gateway, fresh_redis):
    room = uniq("trim")
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, history_recent=20)
    pid, seqs = await stall_node2(fresh_redis, n2, alice, room)
    last = seqs[-1]
    os.kill(pid, signal.SIGCONT)
    events = await stream_of(bob, room, last)
    delivered, gaps = check_covered(events, 1, last)
    # Redis holds the last 20: the gap is exactly what it no longer holds
    assert len(gaps) == 1 and gaps[0][1] == last - 20, gaps
    assert delivered[-20:] == list(range(last - 19, last + 1))
    await alice.ok("send", room=room, text="live")
    assert (await bob.event(ev="msg", room=room))["seq"] == last + 1
    await closeall(alice, bob)


async def test_mariadb_down_during_refill(gateway, archiver, mariadb, fresh_redis, fresh_database):
    db = fresh_database
    archiver.ok("migrate", mysql_url=db.url)
    room, other = uniq("mdown"), uniq("mdown-other")
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, mysql_url=db.url,
                                         history_recent=20)
    carol = await login(n2, "gap-carol")
    dave = await login(n1, "gap-dave")
    await carol.ok("join", room=other)
    await dave.ok("join", room=other)
    # the room's first send asks MariaDB for the seq floor: do it while it is up
    await dave.ok("send", room=other, text="first")
    await carol.event(ev="msg", room=other)
    arch = archiver("run", redis_url=fresh_redis.url, mysql_url=db.url)
    pid, seqs = await stall_node2(fresh_redis, n2, alice, room)
    wait_archived(db, room, seqs[-1])
    seqs += await send_batch(alice, room, 1)
    last = seqs[-1]
    wait_archived(db, room, last)
    arch.stop()
    mariadb.stop()
    try:
        os.kill(pid, signal.SIGCONT)
        # the worker keeps serving other rooms while the refill waits
        t0 = time.monotonic()
        await dave.ok("send", room=other, text="other room")
        m = await carol.event(ev="msg", room=other, timeout=5)
        assert m["text"] == "other room" and time.monotonic() - t0 < 3
        events = await stream_of(bob, room, last, timeout=60)
    finally:
        mariadb.start()
    delivered, gaps = check_covered(events, 1, last)
    # MariaDB stayed down through the retries: a gap for exactly what only
    # it holds, then the part Redis still has (the last 20)
    assert len(gaps) == 1 and gaps[0][1] == last - 20, gaps
    assert delivered[-20:] == list(range(last - 19, last + 1))
    await alice.ok("send", room=room, text="live")
    assert (await bob.event(ev="msg", room=room))["seq"] == last + 1
    await closeall(alice, bob, carol, dave)


async def test_default_pubsub_limit_stalled_worker_refilled_in_chunks(gateway, archiver,
                                                                      fresh_redis,
                                                                      fresh_database):
    """The issue's repro with Redis's default pub/sub limit (no CONFIG SET).
    The stopped worker's link is dropped once ~32 MB are queued for it in
    Redis (about 9,000 messages of 4 KB here), and Redis throws that queue
    away: some 8,000 messages, far past recover_max (default 500; with the
    default send_buffer_limit of 4m a chunk holds ~250 of them). The refill
    reads them back chunk by chunk from the recent zset and MariaDB, each
    once the members' output drained: Bob gets every acknowledged message
    exactly once, in order, no gap, then live messages."""
    db = fresh_database
    got = fresh_redis.cli("CONFIG", "GET", "client-output-buffer-limit")
    assert "pubsub 33554432 8388608 60" in got, got
    archiver.ok("migrate", mysql_url=db.url)
    room = uniq("dflt")
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, mysql_url=db.url)
    arch = archiver("run", redis_url=fresh_redis.url, mysql_url=db.url)
    seqs = await send_batch(alice, room, 10)
    assert [m["seq"] for m in await bob.msgs(10, room=room)] == seqs
    base = pubsub_clients(fresh_redis)
    (pid,) = n2.worker_pids()
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        while len(seqs) < 20000:
            seqs += await send_batch(alice, room, 250)
            if pubsub_clients(fresh_redis) < base:
                break
        print(f"subscription dropped after {len(seqs) - 10} messages, "
              f"{time.monotonic() - t0:.1f} s")
        assert pubsub_clients(fresh_redis) < base, f"not dropped after {len(seqs)} messages"
    finally:
        os.kill(pid, signal.SIGCONT)
    last = seqs[-1]
    assert seqs == list(range(1, last + 1))
    # Carol joins on node 2 while its refill runs: her join waits for the
    # room and holds none of the refilled messages (no 1013 close)
    carol = await login(n2, "gap-carol")
    j = await carol.ok("join", room=room, timeout=120)
    assert j["seq"] >= last
    events = await stream_of(bob, room, last, timeout=120)
    delivered, gaps = check_covered(events, 11, last)
    mysql = metric(n2, "parley_refill_messages_total", source="mysql") or 0
    redis_n = metric(n2, "parley_refill_messages_total", source="redis") or 0
    print(f"last={last} stream={summary(events)} refill mysql={mysql} redis={redis_n}")
    assert gaps == [] and delivered == list(range(11, last + 1))
    assert mysql + redis_n > 500  # more than one chunk was refilled
    assert (metric(n2, "parley_gap_events_total") or 0) == 0
    await alice.ok("send", room=room, text="live")
    assert (await bob.event(ev="msg", room=room))["seq"] == last + 1
    assert (await carol.event(ev="msg", room=room))["seq"] == last + 1
    await bob.no_event(0.5, ev="msg")
    arch.stop()
    await closeall(alice, bob, carol)


async def test_live_messages_during_chunked_refill(gateway, archiver, fresh_redis, fresh_database):
    """Alice keeps sending while node 2 refills in chunks of 20: the live
    messages held meanwhile overflow stream_queue_max (16) and are left to
    the refill, which reads them too. Bob still gets every message once,
    in order, no gap."""
    db = fresh_database
    archiver.ok("migrate", mysql_url=db.url)
    room = uniq("stalllive")
    n1, n2, alice, bob = await two_nodes(gateway, fresh_redis, room, mysql_url=db.url,
                                         recover_max=20, stream_queue_max=16)
    arch = archiver("run", redis_url=fresh_redis.url, mysql_url=db.url)
    pid, seqs = await stall_node2(fresh_redis, n2, alice, room)
    os.kill(pid, signal.SIGCONT)
    for _ in range(6):
        seqs += await send_batch(alice, room, 50)
    last = seqs[-1]
    assert seqs == list(range(1, last + 1))
    events = await stream_of(bob, room, last)
    delivered, gaps = check_covered(events, 1, last)
    assert gaps == [] and delivered == list(range(1, last + 1))
    assert (metric(n2, "parley_gap_events_total") or 0) == 0
    await alice.ok("send", room=room, text="live")
    assert (await bob.event(ev="msg", room=room))["seq"] == last + 1
    await bob.no_event(0.5, ev="msg")
    arch.stop()
    await closeall(alice, bob)
