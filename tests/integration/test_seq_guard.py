"""
A room's seq never goes backwards (issue 8, docs/protocol.md 2.3): two nodes
share their own Redis (fresh_redis), with and without MySQL.

Covers: the seq key of a quiet room with members outliving history_ttl (it
expired and new messages restarted at seq 1, which members dropped); Redis
restarted from an RDB snapshot taken before the last messages (the seq key
came back lower; the gateways raise it before sending again, and with MySQL
the archiver sees no conflicts); a regression provoked by hand (SET the seq
key lower) being delivered, logged, counted and healed; and the archiver not
raising the archived marker over a seq it dead-lettered as a conflict.
"""
import asyncio
import time

import pytest

from lib import archutil as au
from lib import pl
from lib.chatlib import FAST, closeall, login, uniq

MODES = ["redis", "mysql"]


def seq_key(room):
    return f"parley:{{{room}}}:seq"


class Cluster:
    """Two gateways on fresh_redis; with mysql also a database (migrated)."""

    def __init__(self, request, mode, **opts):
        self.redis = request.getfixturevalue("fresh_redis")
        gateway = request.getfixturevalue("gateway")
        self.db = None
        o = dict(FAST)
        o.update(opts)
        if mode == "mysql":
            self.archiver = request.getfixturevalue("archiver")
            self.db = request.getfixturevalue("fresh_database")
            self.archiver.ok("migrate", mysql_url=self.db.url)
            o["mysql_url"] = self.db.url
        self.a = gateway(node_id="sg-a", redis_url=self.redis.url, **o)
        self.b = gateway(node_id="sg-b", redis_url=self.redis.url, **o)

    def run_archiver(self):
        return self.archiver("run", redis_url=self.redis.url, mysql_url=self.db.url,
                             block_ms="100ms")

    def drain(self):
        a = self.archiver("drain", redis_url=self.redis.url, mysql_url=self.db.url)
        assert a.wait(120) == 0, a.log_text()
        return a

    def rows(self, room):
        return [(int(s), m) for s, m in self.db.query(
            f"SELECT seq, msg_id FROM messages WHERE room='{room}' ORDER BY seq")]

    def no_conflicts(self, room, acked):
        """MySQL holds exactly the acked messages under their seqs, nothing
        was dead-lettered."""
        assert self.redis.cli("XLEN", "parley:archive:dead") == "0"
        assert self.rows(room) == sorted((a["seq"], a["msg_id"]) for a in acked)


def metric(gw, name):
    status, _, body = pl.http_get(gw.port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} missing from /metrics")


async def send_until_ok(c, room, text, timeout=20):
    """A send, repeated while the gateway answers unavailable (reconnecting)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await c.cmd("send", room=room, text=text, timeout=10)
        if r["ok"]:
            return r
        assert r["error"] == "unavailable", r
        assert time.monotonic() < deadline, f"send still unavailable after {timeout}s"
        await asyncio.sleep(0.1)


async def got(c, room, n):
    return [(m["seq"], m["msg_id"], m["text"]) for m in await c.msgs(n, room=room, timeout=10)]


@pytest.mark.parametrize("mode", MODES)
async def test_quiet_room_keeps_its_seq_past_history_ttl(request, mode):
    cl = Cluster(request, mode, history_ttl="3s")
    room = uniq("quiet")
    bob = await login(cl.b, "sg-bob")
    await bob.ok("join", room=room)
    # the first five from node a, by someone who then leaves (node a forgets the room)
    alice = await login(cl.a, "sg-alice")
    await alice.ok("join", room=room)
    first = [await alice.ok("send", room=room, text=f"m{i}") for i in range(1, 6)]
    assert [a["seq"] for a in first] == [1, 2, 3, 4, 5]
    assert [g[0] for g in await got(bob, room, 5)] == [1, 2, 3, 4, 5]
    await alice.close()
    # quiet past history_ttl: Bob's presence keeps the seq key alive
    await asyncio.sleep(4.5)
    assert cl.redis.cli("GET", seq_key(room)) == "5"
    assert int(cl.redis.cli("PTTL", seq_key(room))) > 3000
    carol = await login(cl.a, "sg-carol")
    r = await carol.ok("join", room=room)
    assert r["seq"] == 5
    acks = [await carol.ok("send", room=room, text=f"n{i}") for i in range(1, 4)]
    assert [a["seq"] for a in acks] == [6, 7, 8]
    assert await got(bob, room, 3) == [(a["seq"], a["msg_id"], f"n{i}")
                                      for i, a in enumerate(acks, 1)]
    assert metric(cl.b, "parley_seq_regressions_total") == 0
    if cl.db:
        cl.drain()
        cl.no_conflicts(room, first + acks)
    await closeall(bob, carol)


@pytest.mark.parametrize("mode", MODES)
async def test_redis_restarted_from_older_snapshot_never_reuses_a_seq(request, mode):
    cl = Cluster(request, mode)
    arch = cl.run_archiver() if cl.db else None
    room = uniq("rdb")
    bob = await login(cl.b, "sg-bob")
    carol = await login(cl.a, "sg-carol")
    dave = await login(cl.a, "sg-dave")  # a member on the sender's node
    for c in (bob, carol, dave):
        await c.ok("join", room=room)
    acked = [await carol.ok("send", room=room, text=f"m{i}") for i in range(1, 4)]
    assert cl.redis.cli("SAVE") == "OK"  # the snapshot has seq 3
    acked += [await carol.ok("send", room=room, text=f"m{i}") for i in range(4, 7)]
    assert [a["seq"] for a in acked] == [1, 2, 3, 4, 5, 6]
    for c in (bob, dave):
        assert [g[0] for g in await got(c, room, 6)] == [1, 2, 3, 4, 5, 6]
    if cl.db:
        au.wait_rows(cl.db, 6, proc=arch)  # 4-6 are in MySQL, not in the snapshot
    # Redis dies and comes back from the snapshot: its seq key says 3
    cl.redis.kill()
    cl.redis.start()
    assert cl.redis.cli("GET", seq_key(room)) in ("3", "6")  # 6 once a gateway raised it
    new = [await send_until_ok(carol, room, f"n{i}") for i in range(1, 4)]
    assert all(a["seq"] > 6 for a in new), [a["seq"] for a in new]
    assert [a["seq"] for a in new] == sorted(a["seq"] for a in new)
    for c in (bob, dave):
        assert await got(c, room, 3) == [(a["seq"], a["msg_id"], f"n{i}")
                                         for i, a in enumerate(new, 1)]
    for gw in (cl.a, cl.b):
        assert metric(gw, "parley_seq_regressions_total") == 0
    # a later joiner recovering from before the restart sees no used seq twice
    eve = await login(cl.b, "sg-eve")
    r = await eve.ok("join", room=room, since=6)
    assert r["seq"] == new[-1]["seq"]
    if cl.db:
        au.wait_rows(cl.db, 9, proc=arch)
        m = au.metrics(arch)
        assert m.get("parley_archiver_conflicts_total", 0) == 0
        cl.no_conflicts(room, acked + new)
        # the marker never passed anything MySQL does not hold under that seq
        marker = int(cl.redis.cli("GET", f"parley:{{{room}}}:archived") or 0)
        assert marker <= new[-1]["seq"]
    await closeall(bob, carol, dave, eve)


@pytest.mark.parametrize("mode", MODES)
async def test_regression_is_detected_delivered_and_healed(request, mode):
    cl = Cluster(request, mode)
    room = uniq("regr")
    bob = await login(cl.b, "sg-bob")
    carol = await login(cl.a, "sg-carol")
    await bob.ok("join", room=room)
    await carol.ok("join", room=room)
    for i in range(1, 6):
        await carol.ok("send", room=room, text=f"m{i}")
    assert [g[0] for g in await got(bob, room, 5)] == [1, 2, 3, 4, 5]
    # someone lowers the seq behind the gateways' backs
    cl.redis.cli("SET", seq_key(room), "2")
    r = await carol.ok("send", room=room, text="under a used seq")
    assert r["seq"] == 3
    # Bob gets it although he is past seq 3
    assert await got(bob, room, 1) == [(3, r["msg_id"], "under a used seq")]
    pl.wait_for(lambda: metric(cl.b, "parley_seq_regressions_total") >= 1, 5,
                what="regression counted")
    assert "seq regression" in cl.b.log_text() and "level=error" in cl.b.log_text()
    # the detecting workers raised Redis back: the room continues above 5
    pl.wait_for(lambda: int(cl.redis.cli("GET", seq_key(room))) >= 5, 5, what="seq raised back")
    r2 = await carol.ok("send", room=room, text="after")
    assert r2["seq"] == 6
    assert await got(bob, room, 1) == [(6, r2["msg_id"], "after")]
    await closeall(bob, carol)


async def test_dm_regression_is_delivered(request):
    cl = Cluster(request, "redis")
    peer = await login(cl.b, "sg-peer")
    sender = await login(cl.a, "sg-sender")
    room = "dm:sg-peer:sg-sender"
    for i in range(1, 4):
        await sender.ok("dm", to="sg-peer", text=f"d{i}")
    assert [g[0] for g in await got(peer, room, 3)] == [1, 2, 3]
    cl.redis.cli("SET", seq_key(room), "1")
    r = await sender.ok("dm", to="sg-peer", text="again 2")
    assert r["seq"] == 2
    assert await got(peer, room, 1) == [(2, r["msg_id"], "again 2")]
    pl.wait_for(lambda: metric(cl.b, "parley_seq_regressions_total") >= 1, 5,
                what="regression counted")
    pl.wait_for(lambda: int(cl.redis.cli("GET", seq_key(room))) >= 3, 5, what="seq raised back")
    r2 = await sender.ok("dm", to="sg-peer", text="d4")
    assert r2["seq"] == 4
    await closeall(peer, sender)


def test_archiver_marker_never_passes_a_conflict(archiver, fresh_database, fresh_redis):
    """The archiver dead-letters a message whose (room, seq) MySQL holds
    under another msg_id; the archived marker must stay below it, or the
    gateways would trim the only copy of that message from Redis."""
    db, r = fresh_database, fresh_redis
    au.migrate(archiver, db)
    room = uniq("mk")
    marker = f"parley:{{{room}}}:archived"
    au.xadd_many(r, "parley:archive", [au.entry(room, s) for s in (1, 2, 3, 4)])
    a = archiver("run", redis_url=r.url, mysql_url=db.url, block_ms="100ms")
    au.wait_rows(db, 4, proc=a)
    pl.wait_for(lambda: r.cli("GET", marker) == "4", 10, what="marker at 4")
    # Redis restored from an older snapshot: marker 2, and seqs 3.. handed out again
    r.cli("SET", marker, "2")
    au.xadd_many(r, "parley:archive", [au.entry(room, 3, msg_id="other-3"),
                                       au.entry(room, 4, msg_id="other-4"),
                                       au.entry(room, 5)])
    pl.wait_for(lambda: au.metrics(a).get("parley_archiver_conflicts_total") == 2, 20,
                what="conflicts counted")
    pl.wait_for(lambda: au.group_pending(r, "parley:archive", "archiver") == 0, 10,
                what="nothing pending")
    assert r.cli("XLEN", "parley:archive:dead") == "2"
    assert int(r.cli("GET", marker)) == 2
    assert a.stop() == 0
