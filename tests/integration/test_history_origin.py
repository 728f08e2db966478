"""
Messages a worker fetches from the recent zset (catch-up after a gap or a
resubscription) keep their origin: the sending connection gets only its
reply, never its own message as an event (docs/protocol.md 2). History and
join recovery output is unchanged by the origin kept in the zset member.
"""
import asyncio

from lib.chatlib import FAST, closeall, login, uniq


async def test_catchup_after_resubscribe_skips_the_sender(gateway, fresh_redis):
    gw = gateway(redis_url=fresh_redis.url, workers=1, **FAST)
    room = uniq("orig")
    alice = await login(gw, "alice")
    bob = await login(gw, "bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    await alice.ok("send", room=room, text="before")
    assert [m["seq"] for m in await bob.msgs(1, room=room)] == [1]
    sent = []
    for _ in range(5):
        # drop the worker's subscription link; sends right after it are
        # published while nobody of this worker listens, and reach bob only
        # through the catch-up fetch once the link is back
        fresh_redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
        for _ in range(4):
            sent.append((await alice.ok("send", room=room, text=f"m{len(sent)}"))["seq"])
        await asyncio.sleep(0.05)
    got = await bob.msgs(len(sent), room=room, timeout=20)
    assert [m["seq"] for m in got] == sent == list(range(2, 2 + len(sent)))
    await alice.no_event(1.0, ev="msg")
    # history and join recovery show the plain events
    r = await alice.ok("history", room=room, limit=100)
    assert [m["seq"] for m in r["messages"]] == list(range(1, 2 + len(sent)))
    assert all(set(m) == {"ev", "room", "seq", "msg_id", "from", "text", "ts"}
               for m in r["messages"])
    carol = await login(gw, "carol")
    j = await carol.ok("join", room=room, since=0)
    assert j["recovered"] is True
    assert (await carol.msgs(len(sent) + 1, room=room)) == r["messages"]
    await closeall(alice, bob, carol)
