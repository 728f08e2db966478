"""
Chat protocol v1 core: auth, join/leave/send, fanout across nodes and
workers, sender exclusion, multi-device, ordering, history, cid retries.
docs/protocol.md is the spec these check.
"""
import asyncio
import json

import pytest

from lib import pl
from lib.chatlib import FAST, closeall, login, open_ws, uniq


@pytest.fixture
def two_nodes(gateway):
    a = gateway(node_id="node-a", **FAST)
    b = gateway(node_id="node-b", **FAST)
    return a, b


async def test_auth_ok_reply_shape(gateway):
    gw = gateway()
    c = await open_ws(gw)
    r = await c.cmd("auth", token=pl.token("alice"))
    assert r["ok"] is True and r["user"] == "alice"
    assert len(r["session"]) == 32 and int(r["session"], 16) >= 0
    await c.close()


async def test_send_fanout_two_nodes(two_nodes):
    a, b = two_nodes
    room = uniq()
    alice = await login(a, "alice")
    bob = await login(b, "bob")
    carol = await login(a, "carol")
    for c in (alice, bob, carol):
        r = await c.ok("join", room=room)
        assert r["room"] == room and r["seq"] == 0
    r = await alice.ok("send", room=room, text="hello")
    assert r["room"] == room and r["seq"] == 1 and len(r["msg_id"]) == 32 and r["ts"] > 1.6e12
    for c in (bob, carol):
        m = await c.event(ev="msg")
        assert m == {"ev": "msg", "room": room, "seq": 1, "msg_id": r["msg_id"], "from": "alice",
                     "text": "hello", "ts": r["ts"]}
    await alice.no_event(0.5, ev="msg")
    await closeall(alice, bob, carol)


async def test_sender_exclusion_and_multi_device(two_nodes):
    a, b = two_nodes
    room = uniq()
    phone = await login(a, "alice")
    laptop = await login(b, "alice")
    web = await login(a, "alice")
    bob = await login(b, "bob")
    for c in (phone, laptop, web, bob):
        await c.ok("join", room=room)
    r = await phone.ok("send", room=room, text="from phone")
    for c in (laptop, web, bob):
        m = await c.event(ev="msg")
        assert m["seq"] == r["seq"] and m["text"] == "from phone" and m["from"] == "alice"
    await phone.no_event(0.5, ev="msg")
    for c in (phone, laptop, web, bob):
        await c.close()


async def test_not_joined_and_leave(gateway):
    gw = gateway()
    room = uniq()
    alice = await login(gw, "alice")
    bob = await login(gw, "bob")
    await alice.err("send", "not_joined", room=room, text="x")
    await alice.err("typing", "not_joined", room=room)
    await alice.err("leave", "not_joined", room=room)
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    await alice.ok("send", room=room, text="1")
    await bob.event(ev="msg", text="1")
    r = await bob.ok("leave", room=room)
    assert r["room"] == room
    await alice.ok("send", room=room, text="2")
    await bob.no_event(0.5, ev="msg")
    await bob.err("send", "not_joined", room=room, text="x")
    # rejoin: seq continues
    r = await bob.ok("join", room=room)
    assert r["seq"] == 2
    await alice.ok("send", room=room, text="3")
    m = await bob.event(ev="msg")
    assert m["seq"] == 3 and m["text"] == "3"
    await alice.close()
    await bob.close()


async def test_thousand_messages_in_order_on_both_nodes(two_nodes):
    a, b = two_nodes
    room = uniq()
    s1 = await login(a, "s1")
    s2 = await login(b, "s2")
    readers = [await login(a, "r1"), await login(b, "r2"), await login(a, "r3"), await login(b, "r4")]
    for c in [s1, s2] + readers:
        await c.ok("join", room=room)

    async def sender(c, tag, n):
        for i in range(n):
            while True:
                r = await c.cmd("send", room=room, text=f"{tag}-{i}")
                if r["ok"]:
                    break
                assert r["error"] == "rate_limited", r
                await asyncio.sleep(0.05)

    await asyncio.gather(sender(s1, "a", 500), sender(s2, "b", 500))
    for c in readers:
        ms = await c.msgs(1000, timeout=30, room=room)
        seqs = [m["seq"] for m in ms]
        assert seqs == list(range(1, 1001))
        # each sender's own order is kept too
        a_texts = [m["text"] for m in ms if m["from"] == "s1"]
        assert a_texts == [f"a-{i}" for i in range(500)]
    # senders saw each other's 500, not their own
    ms = await s1.msgs(500, timeout=30, room=room)
    assert all(m["from"] == "s2" for m in ms)
    await s1.no_event(0.3, ev="msg")
    for c in [s1, s2] + readers:
        await c.close()


async def test_dm_privacy(two_nodes):
    a, b = two_nodes
    alice = await login(a, "dm-alice")
    alice2 = await login(b, "dm-alice")
    bob = await login(b, "dm-bob")
    eve = await login(a, "dm-eve")
    r = await alice.ok("dm", to="dm-bob", text="psst")
    assert r["room"] == "dm:dm-alice:dm-bob" and r["seq"] >= 1
    m = await bob.event(ev="msg")
    assert m["room"] == "dm:dm-alice:dm-bob" and m["text"] == "psst" and m["from"] == "dm-alice"
    m = await alice2.event(ev="msg")
    assert m["text"] == "psst"
    await alice.no_event(0.4, ev="msg")
    await eve.no_event(0.1, ev="msg")
    # reply the other way
    r2 = await bob.ok("dm", to="dm-alice", text="yes?")
    assert r2["room"] == r["room"] and r2["seq"] == r["seq"] + 1
    for c in (alice, alice2):
        m = await c.event(ev="msg")
        assert m["text"] == "yes?"
    # eve cannot read, join or send into it
    await eve.err("history", "forbidden", room=r["room"])
    await eve.err("join", "forbidden", room=r["room"])
    await eve.err("send", "not_joined", room=r["room"], text="x")
    await eve.err("presence", "forbidden", room=r["room"])
    h = await bob.ok("history", room=r["room"])
    assert [x["text"] for x in h["messages"]][-2:] == ["psst", "yes?"]
    await alice.err("dm", "bad_request", to="dm-alice", text="me")
    for c in (alice, alice2, bob, eve):
        await c.close()


async def test_history_pages(gateway):
    gw = gateway(**FAST)
    room = uniq()
    c = await login(gw, "hist")
    await c.ok("join", room=room)
    h = await c.ok("history", room=room)
    assert h == {"id": h["id"], "ok": True, "room": room, "messages": [], "more": False,
                 "complete": True}
    for i in range(1, 121):
        await c.ok("send", room=room, text=f"m{i}")
    h = await c.ok("history", room=room)
    assert [m["seq"] for m in h["messages"]] == list(range(71, 121)) and h["more"] is True
    m = h["messages"][-1]
    assert m["text"] == "m120" and m["from"] == "hist" and m["room"] == room and len(m["msg_id"]) == 32
    h = await c.ok("history", room=room, before=71, limit=100)
    assert [m["seq"] for m in h["messages"]] == list(range(1, 71)) and h["more"] is False
    h = await c.ok("history", room=room, before=11, limit=10)
    assert [m["seq"] for m in h["messages"]] == list(range(1, 11)) and h["more"] is False
    h = await c.ok("history", room=room, before=12, limit=10)
    assert [m["seq"] for m in h["messages"]] == list(range(2, 12)) and h["more"] is True
    # readable without joining (allowed to join)
    d = await login(gw, "other")
    h = await d.ok("history", room=room, limit=1)
    assert h["messages"][0]["seq"] == 120
    await c.close()
    await d.close()


async def test_history_trimmed_to_recent(gateway, redis):
    gw = gateway(history_recent=20, **FAST)
    room = uniq()
    c = await login(gw, "trim")
    await c.ok("join", room=room)
    for i in range(30):
        await c.ok("send", room=room, text=f"m{i}")
    h = await c.ok("history", room=room, limit=100)
    assert [m["seq"] for m in h["messages"]] == list(range(11, 31))
    assert redis.cli("ZCARD", f"parley:{{{room}}}:recent") == "20"
    ttl = int(redis.cli("PTTL", f"parley:{{{room}}}:recent"))
    assert 0 < ttl <= 7 * 86400 * 1000
    await c.close()


async def test_cid_retry(two_nodes):
    a, b = two_nodes
    room = uniq()
    alice = await login(a, "cid-alice")
    bob = await login(b, "cid-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    r1 = await alice.ok("send", room=room, text="once", cid="c-1")
    r2 = await alice.ok("send", room=room, text="once", cid="c-1")
    assert (r2["seq"], r2["msg_id"], r2["ts"]) == (r1["seq"], r1["msg_id"], r1["ts"])
    await bob.event(ev="msg", text="once")
    await bob.no_event(0.5, ev="msg")
    # another user may use the same cid
    await bob.ok("send", room=room, text="bob's", cid="c-1")
    m = await alice.event(ev="msg")
    assert m["text"] == "bob's" and m["seq"] == r1["seq"] + 1
    r3 = await alice.ok("send", room=room, text="twice", cid="c-2")
    assert r3["seq"] == r1["seq"] + 2
    h = await alice.ok("history", room=room)
    assert [x["text"] for x in h["messages"]] == ["once", "bob's", "twice"]
    await alice.close()
    await bob.close()


async def test_archive_stream_contract(gateway, redis):
    gw = gateway()
    room = uniq()
    c = await login(gw, "arch")
    await c.ok("join", room=room)
    text = 'quote " backslash \\ newline \n unicode é ✓'
    r = await c.ok("send", room=room, text=text)
    entries = json.loads(redis.cli("--json", "XREVRANGE", "parley:archive", "+", "-", "COUNT", "100"))
    mine = [e for e in entries if r["msg_id"] in e[1]]
    assert len(mine) == 1
    fields = mine[0][1]
    assert fields[0::2] == ["room", "seq", "msg_id", "from", "text", "ts"]
    d = dict(zip(fields[0::2], fields[1::2]))
    assert d == {"room": room, "seq": str(r["seq"]), "msg_id": r["msg_id"], "from": "arch",
                 "text": text, "ts": str(r["ts"])}
    await c.close()


async def test_bad_input_keeps_connection(gateway):
    gw = gateway()
    room = uniq()
    c = await login(gw, "badin")
    bad = ["nope", "[]", "42", "null", '"str"', "{}", '{"op":"fly","id":1}', '{"op":5}',
           '{"op":"join"}', '{"op":"join","room":7}', '{"op":"join","room":"a b"}',
           '{"op":"join","room":"' + "r" * 129 + '"}', '{"op":"send","room":"x"}',
           '{"op":"send","room":"x","text":5}', '{"op":"history","room":"x","limit":0}',
           '{"op":"history","room":"x","limit":201}', '{"op":"history","room":"x","before":"a"}',
           '{"op":"join","room":"x","since":-3}', '{"op":"dm","to":"a b","text":"x"}',
           '{"op":"join","id":"7","room":"x"}']
    for raw in bad:
        await c.send_raw(raw)
        m = await c.other()
        assert m["ok"] is False and m["error"] == "bad_request", (raw, m)
    # with an id the reply carries it
    r = await c.cmd("fly")
    assert r["ok"] is False and r["error"] == "bad_request" and "id" in r
    r = await c.cmd("join", room="bad room")
    assert r["error"] == "bad_request"
    # still works
    await c.ok("join", room=room)
    await c.ok("send", room=room, text="still here")
    await c.close()


async def test_too_large(gateway):
    gw = gateway(max_text_size="1k")
    room = uniq()
    c = await login(gw, "big")
    await c.ok("join", room=room)
    await c.err("send", "too_large", room=room, text="x" * 1025)
    await c.err("dm", "too_large", to="someone", text="x" * 1025)
    await c.ok("send", room=room, text="x" * 1024)
    # default 4 KiB
    gw2 = gateway()
    d = await login(gw2, "big2")
    await d.ok("join", room=room)
    await d.err("send", "too_large", room=room, text="é" * 2049)  # 4098 bytes
    await d.ok("send", room=room, text="x" * 4096)
    await c.close()
    await d.close()


async def test_typing(two_nodes):
    a, b = two_nodes
    room = uniq()
    alice = await login(a, "ty-alice")
    bob = await login(b, "ty-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    await alice.send_raw(json.dumps({"op": "typing", "id": 9, "room": room}))
    m = await bob.event(ev="typing")
    assert m == {"ev": "typing", "room": room, "user": "ty-alice"}
    await alice.no_event(0.4, ev="typing")
    # no reply for typing, and nothing stored
    try:
        m = await alice.other(timeout=0.4)
        raise AssertionError(f"typing got a reply: {m}")
    except AssertionError as e:
        assert "no id-less" in str(e) or "typing got" not in str(e)
    h = await bob.ok("history", room=room)
    assert h["messages"] == []
    await alice.close()
    await bob.close()


async def test_chat_metrics(gateway):
    gw = gateway()
    room = uniq()
    alice = await login(gw, "met-alice")
    bob = await login(gw, "met-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    await alice.ok("send", room=room, text="one")
    await bob.event(ev="msg")
    status, _, body = pl.http_get(gw.port, "/metrics")
    text = body.decode() if isinstance(body, bytes) else body
    assert status == 200

    def total(name):
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{") and "worker" not in line:
                return float(line.split()[-1])
        raise AssertionError(f"{name} missing from /metrics")

    assert total("parley_chat_messages_total") >= 1
    assert total("parley_chat_deliveries_total") >= 1
    total("parley_chat_unavailable_total")
    total("parley_chat_redis_errors_total")
    await alice.close()
    await bob.close()


async def test_channel_subscribed_while_members_exist(gateway, redis):
    gw = gateway(workers=1)
    room = uniq()
    ch = f"parley:{{{room}}}:ch"

    def numsub():
        out = redis.cli("PUBSUB", "NUMSUB", ch).split("\n")
        return int(out[1])

    a = await login(gw, "sub-a")
    b = await login(gw, "sub-b")
    assert numsub() == 0
    await a.ok("join", room=room)
    await b.ok("join", room=room)
    assert numsub() == 1  # one subscription per worker, not per member
    await a.ok("leave", room=room)
    assert numsub() == 1
    await b.close()
    pl.wait_for(lambda: numsub() == 0, 5, what="unsubscribed after the last member left")
    await a.ok("join", room=room)  # and back
    assert numsub() == 1
    await a.close()


async def test_join_leave_churn_during_traffic(two_nodes):
    """Members joining and leaving quickly (channel subscribe/unsubscribe
    races on one worker) never disturb steady members, and every rejoin
    gets a working stream."""
    a, b = two_nodes
    room = uniq()
    sender = await login(a, "ch-sender")
    steady = [await login(a, "ch-steady-a"), await login(b, "ch-steady-b")]
    for c in [sender] + steady:
        await c.ok("join", room=room)
    churners = [await login(a if i % 2 else b, f"ch-churn{i}") for i in range(6)]

    async def churn(c):
        for _ in range(15):
            r = await c.ok("join", room=room)
            assert r["seq"] >= 0
            await c.ok("leave", room=room)

    async def pump():
        for i in range(300):
            await sender.ok("send", room=room, text=f"c{i}")

    await asyncio.gather(pump(), *[churn(c) for c in churners])
    for c in steady:
        ms = await c.msgs(300, timeout=20, room=room)
        assert [m["seq"] for m in ms] == list(range(1, 301))
    # a churner that joins at the end still gets live messages
    last = churners[0]
    last.drain()
    r = await last.ok("join", room=room)
    await sender.ok("send", room=room, text="final")
    m = await last.event(ev="msg", text="final")
    assert m["seq"] == r["seq"] + 1
    for c in [sender] + steady + churners:
        await c.close()


async def test_lone_member_rejoin_resubscribes(gateway):
    """The only member on a worker leaving and rejoining at once (UNSUBSCRIBE
    and SUBSCRIBE back to back) still receives messages."""
    gw = gateway(workers=1, **FAST)
    other = gateway(workers=1, node_id="lone-other", **FAST)
    room = uniq()
    me = await login(gw, "lone")
    sender = await login(other, "lone-sender")
    await sender.ok("join", room=room)
    for i in range(20):
        await me.ok("join", room=room)
        await me.ok("leave", room=room)
    r = await me.ok("join", room=room)
    for i in range(5):
        await sender.ok("send", room=room, text=f"x{i}")
    ms = await me.msgs(5)
    assert [m["seq"] for m in ms] == list(range(r["seq"] + 1, r["seq"] + 6))
    await me.close()
    await sender.close()
