"""
Chat protocol v1 core: auth, join/leave/send, fanout across nodes and
workers, sender exclusion, multi-device, ordering, history, cid retries.
docs/protocol.md is the spec these check.
"""
import asyncio
import json

import pytest

import pl
from chatlib import closeall, login, open_ws, uniq


@pytest.fixture
def two_nodes(gateway):
    a = gateway(node_id="node-a")
    b = gateway(node_id="node-b")
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
