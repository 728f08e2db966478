"""
Limits: rate limiting (rate_limited, then 1008 for sustained abuse) and
the slow consumer closed 1013 while the others keep receiving.
"""
import asyncio
import json
import socket

import pl
from chatlib import login, uniq


async def test_rate_limited(gateway):
    gw = gateway(rate_limit=5, rate_burst=5)
    room = uniq()
    c = await login(gw, "rl")
    await c.ok("join", room=room)
    results = []
    for i in range(12):
        r = await c.cmd("send", room=room, text=f"m{i}")
        results.append(r["ok"] or r["error"])
    assert "rate_limited" in results
    assert results.count(True) >= 4
    await asyncio.sleep(1.2)
    await c.ok("send", room=room, text="after pause")
    await c.close()


async def test_abuse_closed_1008(gateway):
    gw = gateway(rate_limit=1, rate_burst=1)
    c = await login(gw, "abuser")
    for i in range(150):
        try:
            await c.send_raw(json.dumps({"op": "typing", "room": "x"}))
        except Exception:
            break
    code, _ = await c.wait_closed()
    assert code == 1008


async def test_slow_consumer_closed_1013(gateway):
    gw = gateway(send_buffer_limit="64k", rate_limit=100000, rate_burst=100000)
    room = uniq()
    sender = await login(gw, "fast-sender")
    reader = await login(gw, "fast-reader")
    await sender.ok("join", room=room)
    await reader.ok("join", room=room)
    # a raw client that joins and then never reads
    raw = pl.RawWS(gw.port)
    raw.upgrade("/ws")
    raw.send_frame(pl.OP_TEXT, json.dumps({"op": "auth", "id": 1, "token": pl.token("slow")}).encode())
    raw.recv_frame()
    raw.send_frame(pl.OP_TEXT, json.dumps({"op": "join", "id": 2, "room": room}).encode())
    raw.recv_frame()
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # well past what the kernel buffers on loopback can absorb (several MB)
    text = "x" * 4000
    n = 2500
    for i in range(n):
        await sender.ok("send", room=room, text=f"{i}:{text}")
    ms = await reader.msgs(n, timeout=60, room=room)
    assert [m["seq"] for m in ms] == list(range(1, n + 1))
    # the slow one was closed with 1013 (frames still buffered are skipped)
    # The server logs the 1013 close at once; the close frame itself sits
    # behind what the kernel still buffers for the slow reader.
    pl.wait_for(lambda: "code=1013" in gw.log_text() and "user=slow" in gw.log_text(), 10,
                what="slow consumer closed with 1013")
    code = None
    try:
        code, _ = raw.recv_close(timeout=10)
    except OSError:
        pass
    assert code in (None, 1006, 1013), code
    raw.close()
    await sender.close()
    await reader.close()
