"""
History by seq window, time and sender (issue 9, docs/protocol.md 1.5/3.4):
`after`, `around`, `from_ts`/`until_ts`, `sender`, their combinations, `limit`
up to 200 and `complete`, across the Redis/MySQL seam with the archiver
behind (nothing archived), mixed, and caught up (Redis trimmed to
history_recent); the cross-room own-messages form; forbidden rooms; bad
parameters. Each paged walk is compared with the truth computed from the
plain form's walk (which test_history_mysql.py already checks).
"""
import asyncio

from lib.chatlib import FAST, closeall, drain, login, start, uniq

N = 240
RECENT = 40




def zcard(redis, room):
    return int(redis.cli("ZCARD", f"parley:{{{room}}}:recent").strip())


async def plain_walk(c, room):
    out, before = [], None
    while True:
        kw = {"room": room, "limit": 200}
        if before is not None:
            kw["before"] = before
        r = await c.ok("history", **kw)
        assert r["complete"] is (not r["more"]), r
        out = r["messages"] + out
        if r["complete"]:
            return out
        before = r["messages"][0]["seq"]


def match(m, f):
    if "sender" in f and m["from"] != f["sender"]:
        return False
    if "from_ts" in f and m["ts"] < f["from_ts"]:
        return False
    if "until_ts" in f and m["ts"] > f["until_ts"]:
        return False
    if "before" in f and m["seq"] >= f["before"]:
        return False
    if "after" in f and m["seq"] <= f["after"]:
        return False
    return True


async def walk_back(c, room, limit, f, truth):
    """Newest first: pages with before = the page's oldest seq."""
    want = [m for m in truth if match(m, f)]
    got, kw = [], dict(f)
    for _ in range(len(want) + 2):
        r = await c.ok("history", room=room, limit=limit, **kw)
        ms = r["messages"]
        assert [m["seq"] for m in ms] == sorted(m["seq"] for m in ms)
        assert len(ms) <= limit
        got = ms + got
        # each page is exactly the newest `limit` of what is left
        left = [m for m in want if m["seq"] < kw.get("before", 1 << 62)]
        assert ms == left[-limit:] if left else ms == [], (f, limit, kw)
        assert r["complete"] is (len(left) <= limit), (f, limit, kw, r["complete"])
        if r["complete"]:
            break
        kw["before"] = ms[0]["seq"]
    assert got == want, (f, limit)


async def walk_fwd(c, room, limit, f, truth, start=0):
    """Oldest first from after = start: pages with after = the page's newest."""
    want = [m for m in truth if match(m, dict(f, after=start))]
    got, kw = [], dict(f, after=start)
    for _ in range(len(want) + 2):
        r = await c.ok("history", room=room, limit=limit, **kw)
        ms = r["messages"]
        left = [m for m in want if m["seq"] > kw["after"]]
        assert ms == left[:limit], (f, limit, kw)
        assert r["complete"] is (len(left) <= limit), (f, limit, kw)
        got += ms
        if r["complete"]:
            break
        kw["after"] = ms[-1]["seq"]
    assert got == want, (f, limit)


async def check_around(c, room, limit, f, truth, at):
    want = [m for m in truth if match(m, f)]
    older = [m for m in want if m["seq"] < at]
    newer = [m for m in want if m["seq"] >= at]
    h = limit // 2
    exp = (older[-h:] if h else []) + newer[:limit - h]
    r = await c.ok("history", room=room, limit=limit, around=at, **f)
    assert r["messages"] == exp, (f, limit, at)
    if limit > 1:
        assert r["complete_older"] is (len(older) <= h)
        assert r["complete_newer"] is (len(newer) <= limit - h)


def filters(truth):
    ts = sorted(m["ts"] for m in truth)
    lo, hi = ts[len(ts) // 4], ts[3 * len(ts) // 4]
    return [
        {},
        {"sender": "hf-bob"},
        {"from_ts": lo},
        {"until_ts": hi},
        {"from_ts": lo, "until_ts": hi},
        {"sender": "hf-alice", "from_ts": lo, "until_ts": hi},
        {"sender": "hf-bob", "before": N - 30},
        {"before": N // 2},
        {"from_ts": 0, "until_ts": 1},  # nothing
        {"sender": "hf-nobody"},
    ]


async def check_all(c, room, truth, sizes=(1, 7, 200)):
    fs = filters(truth)
    for limit in sizes:
        for f in fs:
            await walk_back(c, room, limit, f, truth)
            fwd = {k: v for k, v in f.items() if k != "before"}
            await walk_fwd(c, room, limit, fwd, truth)
            await walk_fwd(c, room, limit, fwd, truth, start=N // 3)
            if "before" not in f:
                for at in (1, 5, N // 2, N - 3, N):
                    await check_around(c, room, limit, f, truth, at)
    # after and before together: a closed seq window
    w = [m for m in truth if 50 < m["seq"] < 90]
    r = await c.ok("history", room=room, after=50, before=90, limit=200)
    assert r["messages"] == w and r["complete"] is True
    r = await c.ok("history", room=room, after=50, before=90, limit=7)
    assert r["messages"] == w[:7] and r["complete"] is False


async def fill(gateway_c, room, seqs):
    alice, bob = gateway_c
    for i in seqs:
        who = bob if i % 3 == 0 else alice
        r = await who.ok("send", room=room, text=f"m{i}")
        assert r["seq"] == i
        if i % 40 == 0:
            await asyncio.sleep(0.003)  # spread the ts a little


async def test_forms_across_the_seam(gateway, archiver, fresh_redis, fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db, history_recent=RECENT)
    room = uniq("hf")
    alice = await login(gw, "hf-alice")
    bob = await login(gw, "hf-bob")
    for c in (alice, bob):
        await c.ok("join", room=room)
    # archiver behind: nothing archived, everything in Redis
    await fill((alice, bob), room, range(1, N // 2 + 1))
    assert zcard(fresh_redis, room) == N // 2
    truth = await plain_walk(alice, room)
    assert [m["seq"] for m in truth] == list(range(1, N // 2 + 1))
    await check_all(alice, room, truth)
    # mixed: the first half archived, the second half only in Redis
    drain(archiver, fresh_redis, db)
    await fill((alice, bob), room, range(N // 2 + 1, N))
    assert zcard(fresh_redis, room) == N - 1 - N // 2
    truth = await plain_walk(alice, room)
    assert len(truth) == N - 1
    await check_all(alice, room, truth, sizes=(7,))
    # caught up: Redis trimmed to history_recent, the rest from MySQL
    drain(archiver, fresh_redis, db)
    await fill((alice, bob), room, [N])
    assert zcard(fresh_redis, room) == RECENT
    truth = await plain_walk(alice, room)
    assert [m["seq"] for m in truth] == list(range(1, N + 1))
    await check_all(alice, room, truth)
    # MySQL is really asked: the archived part is there
    assert db.scalar(f"SELECT COUNT(*) FROM messages WHERE room='{room}'") == str(N - 1)
    await closeall(alice, bob)


async def test_without_mysql_redis_is_all(gateway):
    gw = gateway(history_recent=1000, **FAST)
    room = uniq("hfr")
    alice = await login(gw, "hf-alice")
    bob = await login(gw, "hf-bob")
    for c in (alice, bob):
        await c.ok("join", room=room)
    await fill((alice, bob), room, range(1, 61))
    truth = await plain_walk(alice, room)
    assert len(truth) == 60
    fs = filters(truth)
    for limit in (1, 7, 200):
        for f in fs:
            await walk_back(alice, room, limit, f, truth)
    # the cross-room form needs the archive
    await alice.err("history", "unavailable", sender="hf-alice")
    await closeall(alice, bob)


async def test_cross_room_own_messages(gateway, archiver, fresh_redis, fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    rooms = [uniq("hfx-a"), uniq("hfx-b"), "dm:hfx-alice:hfx-bob"]
    alice = await login(gw, "hfx-alice")
    bob = await login(gw, "hfx-bob")
    for r in rooms[:2]:
        await alice.ok("join", room=r)
        await bob.ok("join", room=r)
    n = 0
    for i in range(45):
        r = rooms[i % 2]
        await alice.ok("send", room=r, text=f"a{i}")
        await bob.ok("send", room=r, text=f"b{i}")
        n += 1
    for i in range(5):
        await alice.ok("dm", to="hfx-bob", text=f"d{i}")
        n += 1
    drain(archiver, fresh_redis, db)
    mine = []
    for r in rooms:
        mine += [m for m in await plain_walk(alice, r) if m["from"] == "hfx-alice"]
    assert len(mine) == n
    want = sorted(mine, key=lambda m: (m["ts"], m["room"].encode(), m["seq"]), reverse=True)
    for limit in (1, 7, 200):
        got, cursor, pages = [], None, 0
        while True:
            kw = {"sender": "hfx-alice", "limit": limit}
            if cursor:
                kw["cursor"] = cursor
            r = await alice.ok("history", **kw)
            assert r["sender"] == "hfx-alice" and "room" not in r
            ms = r["messages"]
            assert len(ms) <= limit
            # newest page first, each page in time order
            got += list(reversed(ms))
            pages += 1
            if r["complete"]:
                assert "next" not in r
                break
            cursor = r["next"]
        assert got == want, limit
    # a time range
    ts = sorted(m["ts"] for m in mine)
    lo, hi = ts[10], ts[30]
    r = await alice.ok("history", sender="hfx-alice", from_ts=lo, until_ts=hi, limit=200)
    assert r["messages"] == list(reversed([m for m in want if lo <= m["ts"] <= hi]))
    assert r["complete"] is True
    # someone else's messages across rooms: forbidden
    await alice.err("history", "forbidden", sender="hfx-bob")
    # but bob's messages in a room alice may read are fine
    r = await alice.ok("history", room=rooms[0], sender="hfx-bob", limit=200)
    assert r["messages"] and all(m["from"] == "hfx-bob" for m in r["messages"])
    await closeall(alice, bob)


async def test_forbidden_rooms(gateway, archiver, fresh_redis, fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    alice = await login(gw, "hfz-alice")
    other = "dm:hfz-bob:hfz-carol"
    for kw in ({}, {"after": 0}, {"around": 5}, {"sender": "hfz-bob"},
               {"sender": "hfz-alice"}, {"from_ts": 0}, {"until_ts": 5}):
        await alice.err("history", "forbidden", room=other, **kw)
    limited = await login(gw, "hfz-dave", rooms=["ok-room"])
    await limited.ok("history", room="ok-room", after=0)
    await limited.err("history", "forbidden", room="other-room", sender="hfz-dave")
    await closeall(alice, limited)


async def test_bad_parameters(gateway):
    gw = gateway()
    c = await login(gw, "hfb-alice")
    room = uniq("hfb")
    bad = [
        {"room": room, "limit": 0},
        {"room": room, "limit": 201},
        {"room": room, "after": -1},
        {"room": room, "after": "3"},
        {"room": room, "around": 0},
        {"room": room, "around": 5, "before": 9},
        {"room": room, "around": 5, "after": 1},
        {"room": room, "after": 5, "before": 6},
        {"room": room, "from_ts": -1},
        {"room": room, "until_ts": 1.5},
        {"room": room, "from_ts": 10, "until_ts": 9},
        {"room": room, "sender": "not a user!"},
        {"room": room, "sender": 7},
        {"room": room, "cursor": "1.1.x"},
        {"sender": "hfb-alice", "before": 5},
        {"sender": "hfb-alice", "after": 5},
        {"sender": "hfb-alice", "around": 5},
        {},
    ]
    for kw in bad:
        await c.err("history", "bad_request", **kw)
    await c.ok("history", room=room, limit=200)
    await closeall(c)


async def test_bad_cursor(gateway, archiver, fresh_redis, fresh_database):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    c = await login(gw, "hfc-alice")
    for cur in ("x", "1.2", "1.0.room", "-1.2.room", "1.2.bad room"):
        await c.err("history", "bad_request", sender="hfc-alice", cursor=cur)
    r = await c.ok("history", sender="hfc-alice")
    assert r["messages"] == [] and r["complete"] is True
    await closeall(c)
