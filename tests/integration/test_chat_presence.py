"""
Presence: join/leave events when a user's first connection joins / last
leaves anywhere in the cluster, the presence list, and a crashed node's
users disappearing within 60 s.
"""
import asyncio
import signal
import time

from lib.chatlib import login, uniq


async def test_presence_events_and_list(gateway):
    a = gateway(node_id="pr-a")
    b = gateway(node_id="pr-b")
    room = uniq()
    bob = await login(b, "pr-bob")
    await bob.ok("join", room=room)
    alice1 = await login(a, "pr-alice")
    alice2 = await login(b, "pr-alice")
    await alice1.ok("join", room=room)
    m = await bob.event(ev="presence")
    assert m == {"ev": "presence", "room": room, "user": "pr-alice", "state": "join"}
    await alice1.no_event(0.3, ev="presence")  # not to the joiner itself
    await alice2.ok("join", room=room)  # second device: no event
    await bob.no_event(0.4, ev="presence")
    for c in (bob, alice1):
        r = await c.ok("presence", room=room)
        assert sorted(r["users"]) == ["pr-alice", "pr-bob"] and r["room"] == room
    await alice1.ok("leave", room=room)
    await bob.no_event(0.4, ev="presence")  # alice still has a device in the room
    await alice2.close()  # last connection goes
    m = await bob.event(ev="presence")
    assert m == {"ev": "presence", "room": room, "user": "pr-alice", "state": "leave"}
    r = await bob.ok("presence", room=room)
    assert r["users"] == ["pr-bob"]
    # an outsider allowed in the room may list it without joining
    carol = await login(a, "pr-carol")
    r = await carol.ok("presence", room=room)
    assert r["users"] == ["pr-bob"]
    for c in (bob, alice1, carol):
        await c.close()


async def test_crashed_node_users_disappear(gateway):
    a = gateway(node_id="crash-a")
    b = gateway(node_id="crash-b")
    room = uniq()
    bob = await login(b, "cr-bob")
    await bob.ok("join", room=room)
    alice = await login(a, "cr-alice")
    await alice.ok("join", room=room)
    await bob.event(ev="presence", user="cr-alice", state="join")
    # kill node a without any chance to clean up
    a.expect_crash = True
    for pid in a.worker_pids():
        import os
        os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    m = await bob.event(ev="presence", user="cr-alice", state="leave", timeout=65)
    assert time.monotonic() - t0 <= 62
    r = await bob.ok("presence", room=room)
    assert r["users"] == ["cr-bob"]
    for pid in a.worker_pids():
        import os
        os.kill(pid, signal.SIGKILL)
    await bob.close()


async def test_graceful_stop_announces_leave(gateway):
    a = gateway(node_id="gs-a")
    b = gateway(node_id="gs-b")
    room = uniq()
    bob = await login(b, "gs-bob")
    await bob.ok("join", room=room)
    alice = await login(a, "gs-alice")
    await alice.ok("join", room=room)
    await bob.event(ev="presence", user="gs-alice", state="join")
    a.stop()
    m = await bob.event(ev="presence", user="gs-alice", state="leave", timeout=5)
    assert m["room"] == room
    r = await bob.ok("presence", room=room)
    assert r["users"] == ["gs-bob"]
    await bob.close()
