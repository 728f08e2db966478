"""
idle_timeout (issue 9): a connection that sends no command for that long is
closed with 1000 and reason "idle"; commands keep it open; WebSocket pings
from the client (and the server's own pings and their pongs) do not count.
"""
import asyncio
import time

from lib.chatlib import login, open_ws, uniq


async def test_idle_connection_closed_1000_idle(gateway):
    gw = gateway(idle_timeout="1500ms")
    c = await login(gw, "it-alice")
    t0 = time.monotonic()
    code, reason = await c.wait_closed(timeout=5)
    took = time.monotonic() - t0
    assert (code, reason) == (1000, "idle")
    assert 1.3 <= took <= 3.0, took


async def test_commands_keep_it_open(gateway):
    gw = gateway(idle_timeout="1500ms")
    room = uniq("it")
    c = await login(gw, "it-bob")
    await c.ok("join", room=room)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4.0:
        await asyncio.sleep(0.5)
        assert not c.closed.is_set(), c.close_info
        await c.ok("history", room=room, limit=1)
    # then quiet: closed about idle_timeout after the last command
    t1 = time.monotonic()
    code, reason = await c.wait_closed(timeout=5)
    assert (code, reason) == (1000, "idle")
    assert time.monotonic() - t1 >= 1.2


async def test_client_pings_alone_do_not_keep_it_open(gateway):
    # the server pings too (ping_interval 300ms): its pongs do not count either
    gw = gateway(idle_timeout="1500ms", ping_interval="300ms")
    c = await login(gw, "it-carol")
    t0 = time.monotonic()
    while not c.closed.is_set() and time.monotonic() - t0 < 5:
        try:
            await asyncio.wait_for(await c.ws.ping(), 1)
        except Exception:
            break
        await asyncio.sleep(0.2)
    code, reason = await c.wait_closed(timeout=5)
    assert (code, reason) == (1000, "idle")
    assert time.monotonic() - t0 <= 3.0


async def test_unauthenticated_connection_is_left_to_auth_timeout(gateway):
    # before auth, auth_timeout (1008) governs, not idle_timeout
    gw = gateway(idle_timeout="5s", auth_timeout="500ms")
    c = await open_ws(gw)
    code, _ = await c.wait_closed(timeout=5)
    assert code == 1008


async def test_off_by_default(gateway):
    gw = gateway()
    c = await login(gw, "it-dave")
    await asyncio.sleep(2)
    assert not c.closed.is_set()
    await c.ok("history", room=uniq("it"))
    await c.close()
