"""
Hostile clients of the chat protocol (issue 8, "One user cannot amplify"):
one token on twenty sockets (typing and send fanout), rooms per
connection, unauthenticated sockets crowding a worker, a large frame
before auth, one user's connections across two nodes, and DMs to made-up
users. Each test asserts the bound (what a victim receives, what a worker
holds) and that another user on the same gateway keeps being served.

Every test here failed on the code before the limits existed: there the
victim got hundreds of typing events, the 101st room was joined, idle
sockets stayed until auth_timeout, the 5 KiB frame was read (and refused
as "not auth" with 1008), the 21st connection was let in, and the DM
streams grew with every made-up peer.
"""
import asyncio
import json
import time

from lib import pl
from lib.chatlib import FAST, login, metric, open_ws, uniq


def rejections(gw, limit):
    return metric(gw, "parley_limit_rejections_total", limit=limit) or 0


async def served(gw, tag):
    """Another user on the same gateway: joins, sends and receives promptly."""
    room = uniq(f"bystander-{tag}")
    a = await login(gw, f"by-a-{tag}-{time.time_ns()}")
    b = await login(gw, f"by-b-{tag}-{time.time_ns()}")
    await a.ok("join", room=room)
    await b.ok("join", room=room)
    t0 = time.monotonic()
    await a.ok("send", room=room, text="still here")
    m = await b.event(timeout=3, ev="msg", room=room)
    assert m["text"] == "still here"
    assert time.monotonic() - t0 < 2
    await a.close()
    await b.close()


async def attacker_sockets(gw, user, room, n=20):
    cs = []
    for _ in range(n):
        c = await login(gw, user)
        while True:  # with a small bucket the joins themselves may be rate_limited
            r = await c.cmd("join", room=room)
            if r.get("error") != "rate_limited":
                break
            await asyncio.sleep(0.3)
        assert r["ok"] is True, r
        cs.append(c)
    return cs


async def count_events(c, ev, room, quiet=0.6, limit=10.0):
    """Events ev of room received until none came for `quiet` seconds."""
    n = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            m = await asyncio.wait_for(c.events.get(), quiet)
        except asyncio.TimeoutError:
            break
        if m.get("ev") == ev and m.get("room") == room:
            n += 1
    return n


# ---------------------------------------------------------------- fanout amplification

async def test_typing_from_twenty_sockets_is_bounded(gateway):
    """20 sockets x 40 typing each reached every member 800 times; now a
    victim sees at most one per worker per typing_interval."""
    workers = 2
    gw = gateway(workers=workers)
    room = uniq("typing")
    user = f"amp-{time.time_ns()}"
    victim = await login(gw, f"victim-{time.time_ns()}")
    await victim.ok("join", room=room)
    cs = await attacker_sockets(gw, user, room)
    victim.drain()
    t0 = time.monotonic()
    frame = json.dumps({"op": "typing", "room": room})
    for _ in range(40):
        for c in cs:
            await c.send_raw(frame)
    got = await count_events(victim, "typing", room)
    elapsed = time.monotonic() - t0
    # one per worker per started interval (3 s) at most
    bound = workers * (int(elapsed / 3.0) + 1)
    assert 1 <= got <= bound, (got, bound, elapsed)
    assert rejections(gw, "typing_interval") > 0
    await served(gw, "typing")
    for c in cs + [victim]:
        await c.close()


async def test_send_from_twenty_sockets_shares_one_bucket(gateway):
    """One token, twenty sockets: the sends a victim receives are bounded by
    the user's bucket on each worker, not by twenty of them."""
    workers = 2
    gw = gateway(workers=workers, rate_limit=5, rate_burst=10)
    room = uniq("sendamp")
    user = f"amp-send-{time.time_ns()}"
    victim = await login(gw, f"victim-s-{time.time_ns()}")
    await victim.ok("join", room=room)
    cs = await attacker_sockets(gw, user, room)
    victim.drain()
    await asyncio.sleep(2.5)  # the joins above took tokens: let the buckets refill
    t0 = time.monotonic()
    replies = await asyncio.gather(*[c.cmd("send", room=room, text=f"{i}-{k}")
                                     for k in range(10) for i, c in enumerate(cs)])
    elapsed = time.monotonic() - t0
    ok = sum(1 for r in replies if r.get("ok"))
    limited = sum(1 for r in replies if r.get("error") == "rate_limited")
    assert ok + limited == len(replies) == 200
    bound = workers * (10 + 5 * elapsed + 1)
    assert ok <= bound, (ok, bound, elapsed)
    got = await count_events(victim, "msg", room)
    assert got == ok
    assert rejections(gw, "rate_limit") >= limited > 0
    await served(gw, "send")
    for c in cs + [victim]:
        await c.close()


# ---------------------------------------------------------------- rooms per connection

async def test_rooms_per_connection_capped(gateway):
    gw = gateway(workers=1, **FAST)
    c = await login(gw, f"roomy-{time.time_ns()}")
    base = uniq("cap")
    replies = await asyncio.gather(*[c.cmd("join", room=f"{base}-{i}") for i in range(101)])
    ok = [r for r in replies if r.get("ok")]
    refused = [r for r in replies if r.get("error") == "too_many_rooms"]
    assert len(ok) == 100 and len(refused) == 1, replies[-3:]
    # rejoining a room it holds is not a new room; leaving one makes space
    await c.ok("join", room=f"{base}-0")
    await c.ok("leave", room=f"{base}-0")
    await c.ok("join", room=f"{base}-new")
    await c.err("join", "too_many_rooms", room=f"{base}-newer")
    assert rejections(gw, "max_rooms_per_connection") == 2
    await served(gw, "rooms")
    await c.close()


# ---------------------------------------------------------------- before auth

async def test_unauthenticated_sockets_do_not_starve_users(gateway):
    """Sockets that never authenticate: past max_unauthenticated the oldest
    is closed (1013) at once, not after auth_timeout, and users still log in."""
    gw = gateway(workers=1, max_unauthenticated=8, auth_timeout="30s")
    raws = []
    for _ in range(30):
        r = pl.RawWS(gw.port)
        status, _ = r.upgrade("/ws")
        assert status == 101
        raws.append(r)
    codes = [r.recv_close(timeout=3) for r in raws[:22]]
    assert all(code == 1013 for code, _ in codes), codes
    for r in raws[22:]:  # the 8 newest are still waiting
        r.sock.settimeout(0.2)
        try:
            data = r.sock.recv(1)
            assert False, f"a newest socket was closed: {data!r}"
        except TimeoutError:
            pass
    assert rejections(gw, "max_unauthenticated") == 22
    # logging in takes a place off the list: users are served, and eight
    # more fit without closing anyone
    late = f"late-{time.time_ns()}"
    for r in raws[22:]:
        r.send_frame(pl.OP_TEXT, json.dumps({"op": "auth", "id": 1,
                                             "token": pl.token(late)}).encode())
        assert json.loads(r.recv_frame().payload)["ok"] is True
    await served(gw, "unauth")
    more = []
    for _ in range(8):
        r = pl.RawWS(gw.port)
        r.upgrade("/ws")
        more.append(r)
    await asyncio.sleep(0.3)
    assert rejections(gw, "max_unauthenticated") == 22
    for r in raws + more:
        r.sock.close()


async def test_large_frame_before_auth_closes_1009(gateway):
    gw = gateway(workers=1)
    r = pl.RawWS(gw.port)
    r.upgrade("/ws")
    r.send_frame(pl.OP_TEXT, b'{"op":"auth","token":"' + b"x" * 5120 + b'"}')
    assert r.recv_close(timeout=3)[0] == 1009
    assert rejections(gw, "max_auth_message_size") == 1
    # after auth the connection takes max_message_size again
    c = await login(gw, f"big-{time.time_ns()}")
    room = uniq("big")
    await c.ok("join", room=room)
    await c.err("send", "too_large", room=room, text="y" * 8000)  # 8 KB frame: read, refused
    await c.ok("send", room=room, text="still open")
    assert rejections(gw, "max_auth_message_size") == 1
    await c.close()


# ---------------------------------------------------------------- max_user_connections

async def test_max_user_connections_across_two_nodes(gateway, redis):
    a = gateway(node_id="uc-a")
    b = gateway(node_id="uc-b")
    user = f"many-{time.time_ns()}"
    cs = []
    for i in range(20):
        cs.append(await login(a if i % 2 else b, user))
    for gw in (a, b):
        c = await open_ws(gw)
        r = await c.cmd("auth", token=pl.token(user))
        assert r["ok"] is False and r["error"] == "too_many_connections", r
        code, _ = await c.wait_closed()
        assert code == 1008
    assert rejections(a, "max_user_connections") == 1
    assert rejections(b, "max_user_connections") == 1
    # the count lives in Redis with an expiry, so a dead node's entries age out
    key = f"parley:user:{{{user}}}:conns"
    assert int(redis.cli("ZCARD", key).strip()) == 20
    ttl = int(redis.cli("PTTL", key).strip())
    assert 0 < ttl <= 45000
    # one closes on node a: a new one fits on node b
    await cs[1].close()
    await asyncio.sleep(0.3)
    c = await login(b, user)
    await c.ok("join", room=uniq("uc"))
    await served(a, "uc-a")
    await served(b, "uc-b")
    for x in cs + [c]:
        await x.close()
    await asyncio.sleep(0.3)
    assert int(redis.cli("EXISTS", key).strip()) == 0 or int(redis.cli("ZCARD", key).strip()) == 0


# ---------------------------------------------------------------- DM state

async def test_dms_to_made_up_users_keep_state_bounded(gateway):
    """3,000 DMs to made-up users: the sender's worker holds at most 256 DM
    streams for it, and a real DM afterwards still arrives."""
    gw = gateway(workers=1, **FAST)
    me = f"dmer-{time.time_ns()}"
    c = await login(gw, me)
    n = 3000
    for k in range(0, n, 500):
        replies = await asyncio.gather(*[c.cmd("dm", to=f"ghost{i}-{time.time_ns()}", text="hi",
                                               timeout=30)
                                         for i in range(k, k + 500)])
        assert all(r.get("ok") for r in replies), [r for r in replies if not r.get("ok")][:3]
    await asyncio.sleep(0.5)  # the copies on the sender's own channel come back
    held = metric(gw, "parley_chat_dm_streams")
    assert held is not None and held <= 256, held
    friend = await login(gw, f"friend-{time.time_ns()}")
    await friend.ok("dm", to=me, text="real one")
    m = await c.event(timeout=3, ev="msg", **{"from": friend.user})
    assert m["text"] == "real one"
    # a disconnect gives its streams back
    await c.close()
    await friend.close()
    await asyncio.sleep(0.3)
    assert metric(gw, "parley_chat_dm_streams") == 0
