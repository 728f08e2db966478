"""
History across the Redis/MySQL seam (docs/protocol.md 3.3, 3.4): a gateway
with mysql_url and the archiver on the same database. Each test has its own
Redis (fresh_redis) so that FLUSHALL and the archive stream touch nobody else.

Covers: seq floor from MySQL after Redis lost a room, paging from the newest
message to seq 1 while the archiver is behind / partly / fully caught up,
MySQL down (older part and seq floor answer unavailable, Redis-only pages
work, the pool reconnects), recovered:false for a since ahead of a lost
room, hostile text round-tripping through MySQL, and the order of pipelined
sends into a new room (the floor lookup must not let later sends overtake).
"""
import asyncio
import json

from lib import pl
from lib.chatlib import FAST, closeall, drain, login, start, uniq




async def send_many(c, room, texts, timeout=120):
    """Sends every text without waiting for replies; returns the replies in
    send order."""
    loop = asyncio.get_running_loop()
    futs, frames = [], []
    for t in texts:
        c.next_id += 1
        f = loop.create_future()
        c.replies[c.next_id] = f
        futs.append(f)
        frames.append(json.dumps({"op": "send", "id": c.next_id, "room": room, "text": t}))
    for fr in frames:
        await c.ws.send(fr)
    return await asyncio.wait_for(asyncio.gather(*futs), timeout)


async def walk(c, room, limit=100):
    """Pages history from the newest message back while `more`."""
    out, before = [], None
    for _ in range(10000):
        kw = {"room": room, "limit": limit}
        if before is not None:
            kw["before"] = before
        r = await c.ok("history", **kw)
        out = r["messages"] + out
        if not r["more"] or not r["messages"]:
            return out
        before = r["messages"][0]["seq"]
    raise AssertionError("history walk does not end")


def zcard(redis, room):
    return int(redis.cli("ZCARD", f"parley:{{{room}}}:recent").strip())


async def test_history_flushall_continues_seq_from_mysql(gateway, archiver, fresh_redis,
                                                         fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    room = uniq("fl")
    alice = await login(gw, "alice")
    await alice.ok("join", room=room)
    acks = await send_many(alice, room, [f"m{i}" for i in range(1, 501)])
    assert [a["seq"] for a in acks] == list(range(1, 501))
    await closeall(alice)
    drain(archiver, fresh_redis, db)
    assert db.scalar(f"SELECT COUNT(*) FROM messages WHERE room='{room}'") == "500"
    # Redis loses everything; a new gateway (no worker remembers the room)
    gw.stop()
    fresh_redis.cli("FLUSHALL")
    gw = gateway(redis_url=fresh_redis.url, mysql_url=db.url, **FAST)
    bob = await login(gw, "bob")
    # a client that had seen seq 500 learns that it may have missed something
    r = await bob.ok("join", room=room, since=500)
    assert r["recovered"] is False and r["seq"] == 0
    carol = await login(gw, "carol")
    await carol.ok("join", room=room)
    acks = await send_many(carol, room, [f"n{i}" for i in range(1, 11)])
    assert [a["seq"] for a in acks] == list(range(501, 511))
    assert [m["seq"] for m in await bob.msgs(10, room=room)] == list(range(501, 511))
    drain(archiver, fresh_redis, db)
    rows = db.query(f"SELECT seq FROM messages WHERE room='{room}' ORDER BY seq")
    assert [int(r[0]) for r in rows] == list(range(1, 511))
    # and the whole room pages back across the seam
    ms = await walk(bob, room)
    assert [m["seq"] for m in ms] == list(range(1, 511))
    await closeall(bob, carol)


async def test_history_walk_while_archiver_behind_mixed_and_caught_up(gateway, archiver,
                                                                      fresh_redis,
                                                                      fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db, history_recent=100)
    room = uniq("walk")
    alice = await login(gw, "alice")
    await alice.ok("join", room=room)
    texts = {i: f"t{i}" for i in range(1, 3002)}

    def check(ms, n):
        assert [m["seq"] for m in ms] == list(range(1, n + 1))
        assert all(m["text"] == texts[m["seq"]] and m["room"] == room and m["ev"] == "msg"
                   for m in ms)

    # archiver behind (never ran): nothing may be trimmed, all 2,000 in Redis
    acks = await send_many(alice, room, [texts[i] for i in range(1, 2001)])
    assert [a["seq"] for a in acks] == list(range(1, 2001))
    assert zcard(fresh_redis, room) == 2000
    check(await walk(alice, room), 2000)
    # mixed: the first 2,000 archived, 1,000 more only in Redis
    drain(archiver, fresh_redis, db)
    await send_many(alice, room, [texts[i] for i in range(2001, 3001)])
    assert zcard(fresh_redis, room) == 1000  # 2001..3000: trimmed down to the archived mark
    check(await walk(alice, room), 3000)
    # caught up: Redis keeps history_recent, the rest comes from MySQL
    drain(archiver, fresh_redis, db)
    await send_many(alice, room, [texts[3001]])
    assert zcard(fresh_redis, room) == 100
    check(await walk(alice, room), 3001)
    # odd page sizes across the seam too
    check(await walk(alice, room, limit=7), 3001)
    await closeall(alice)


async def test_history_and_floor_unavailable_while_mysql_down(gateway, archiver, fresh_redis,
                                                              fresh_database, mariadb):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db, history_recent=100)
    room = uniq("down")
    alice = await login(gw, "alice")
    await alice.ok("join", room=room)
    await send_many(alice, room, [f"m{i}" for i in range(1, 301)])
    drain(archiver, fresh_redis, db)
    await send_many(alice, room, ["last"])
    assert zcard(fresh_redis, room) == 100  # 202..301 in Redis, the rest only in MySQL
    new_room = uniq("down-new")
    await alice.ok("join", room=new_room)
    mariadb.stop()
    try:
        r = await alice.ok("history", room=room, limit=50)
        assert [m["seq"] for m in r["messages"]] == list(range(252, 302)) and r["more"] is True
        await alice.err("history", "unavailable", room=room, before=210, limit=50)
        await alice.err("history", "unavailable", room=room, before=100, limit=50)
        # a new room's first send needs the floor: refused, no seq assigned
        await alice.err("send", "unavailable", room=new_room, text="first")
        assert fresh_redis.cli("EXISTS", f"parley:{{{new_room}}}:seq").strip() == "0"
        assert zcard(fresh_redis, new_room) == 0
    finally:
        mariadb.start()

    async def history_ok():
        for _ in range(100):
            r = await alice.cmd("history", room=room, before=210, limit=50)
            if r["ok"]:
                return r
            await asyncio.sleep(0.2)
        raise AssertionError("history did not recover after MySQL came back")

    r = await history_ok()
    assert [m["seq"] for m in r["messages"]] == list(range(160, 210))
    r = await alice.ok("send", room=new_room, text="first")
    assert r["seq"] == 1
    await closeall(alice)


HOSTILE = [
    'quote " and \' apostrophe',
    "back\\slash \\\" \\u0041 \\n not escapes",
    "nul \u0000 in the middle\u0000",
    "new\nlines\r\n\ttab",
    "emoji \U0001F600\U0001F468\u200D\U0001F469\u200D\U0001F467 and \u00e9\u4e2d",
    "</script><b>html</b> & ampersand",
    "x" * 4096,
    "\U0001F600" * 1024,  # 4 KiB of 4-byte characters
]


async def test_history_hostile_text_round_trips_through_mysql(gateway, archiver, fresh_redis,
                                                              fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    rooms = [uniq("h.o:s-t_i:le"), "dm:h-alice:h-bob"]
    alice = await login(gw, "h-alice")
    sent = {}
    for room in rooms:
        await alice.ok("join", room=room)
        acks = await send_many(alice, room, HOSTILE)
        sent[room] = acks
    from_redis = {room: (await alice.ok("history", room=room, limit=100))["messages"]
                  for room in rooms}
    drain(archiver, fresh_redis, db)
    fresh_redis.cli("FLUSHALL")  # now the pages can only come from MySQL
    for room in rooms:
        r = await alice.ok("history", room=room, limit=100)
        assert r["more"] is False
        assert r["messages"] == from_redis[room]
        assert [m["text"] for m in r["messages"]] == HOSTILE
        for m, a in zip(r["messages"], sent[room]):
            assert (m["seq"], m["msg_id"], m["ts"], m["from"]) == (a["seq"], a["msg_id"], a["ts"],
                                                                  "h-alice")
    await closeall(alice)


async def order_case(gw):
    room = uniq("order")
    alice = await login(gw, "alice")
    bob = await login(gw, "bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    acks = await send_many(alice, room, [f"o{i}" for i in range(1, 51)])
    assert [a["seq"] for a in acks] == list(range(1, 51))
    ms = await bob.msgs(50, room=room)
    assert [(m["seq"], m["text"]) for m in ms] == [(i, f"o{i}") for i in range(1, 51)]
    await closeall(alice, bob)


async def test_pipelined_sends_into_new_room_keep_order_with_mysql(gateway, archiver, fresh_redis,
                                                                   fresh_database):
    await order_case(start(gateway, archiver, fresh_redis, fresh_database))


async def test_pipelined_sends_into_new_room_keep_order_without_mysql(gateway, fresh_redis):
    await order_case(gateway(redis_url=fresh_redis.url, **FAST))


async def test_concurrent_publishers_on_two_nodes_keep_their_send_order(gateway, fresh_redis):
    """Publishers on two nodes pipeline into a fresh room at once: one
    worker's floor run creates the seq while another worker still has a
    send waiting for its floor; that worker's later sends must not overtake
    it (each publisher's acks rise in send order, all seqs gapless)."""
    a = gateway(redis_url=fresh_redis.url, node_id="ord-a", **FAST)
    b = gateway(redis_url=fresh_redis.url, node_id="ord-b", **FAST)
    for _ in range(5):
        room = uniq("race")
        pubs = [await login(g, f"p{i}") for i, g in enumerate([a, b] * 4)]
        for p in pubs:
            await p.ok("join", room=room)
        results = await asyncio.gather(
            *(send_many(p, room, [f"{i}-{k}" for k in range(30)]) for i, p in enumerate(pubs)))
        every = []
        for acks in results:
            seqs = [x["seq"] for x in acks]
            assert seqs == sorted(seqs), seqs
            every += seqs
        assert sorted(every) == list(range(1, len(every) + 1))
        await closeall(*pubs)


def test_archived_marker_only_covers_contiguous_committed_seqs(archiver, fresh_redis,
                                                               fresh_database):
    """Batches may commit out of order (several writers): the marker must
    never pass a seq that is not in MySQL yet."""
    from lib import archutil as au
    db = fresh_database
    archiver.ok("migrate", mysql_url=db.url)
    room = uniq("mark")
    marker, runs = f"parley:{{{room}}}:archived", f"parley:{{{room}}}:archived:runs"
    fresh_redis.cli("SET", marker, "0")  # as the gateway creates it with the room's seq key
    au.xadd_many(fresh_redis, "parley:archive", [au.entry(room, s) for s in (3, 4, 6)])
    drain(archiver, fresh_redis, db)
    assert fresh_redis.cli("GET", marker).strip() == "0"
    assert fresh_redis.cli("ZRANGE", runs, "0", "-1").split() == ["3-4", "6-6"]
    au.xadd_many(fresh_redis, "parley:archive", [au.entry(room, s) for s in (1, 2)])
    drain(archiver, fresh_redis, db)
    assert fresh_redis.cli("GET", marker).strip() == "4"
    au.xadd_many(fresh_redis, "parley:archive", [au.entry(room, 5)])
    drain(archiver, fresh_redis, db)
    assert fresh_redis.cli("GET", marker).strip() == "6"
    assert fresh_redis.cli("EXISTS", runs).strip() == "0"
