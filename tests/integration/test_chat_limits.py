"""
Limits: rate limiting (rate_limited, then 1008 for sustained abuse) and
the slow consumer closed 1013 while the others keep receiving.
"""
import asyncio
import json
import time

from lib import pl
from lib.chatlib import FAST, login, uniq


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


def open_gauge(gw):
    """parley_connections_open summed over the workers (this scrape included)."""
    status, _, body = gw.http_get("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("parley_connections_open "):
            return int(float(line.split()[-1]))
    raise AssertionError("parley_connections_open not in /metrics")


async def slow_room(gw):
    """A fast sender, a fast reader and a raw member "slow" that will stop
    reading, all joined to one new room. Returns (room, sender, reader, raw)."""
    room = uniq()
    sender = await login(gw, "fast-sender")
    reader = await login(gw, "fast-reader")
    await sender.ok("join", room=room)
    await reader.ok("join", room=room)
    raw = pl.RawWS(gw.port)
    raw.upgrade("/ws")
    for i, cmd in enumerate([{"op": "auth", "token": pl.token("slow")}, {"op": "join", "room": room}]):
        raw.send_frame(pl.OP_TEXT, json.dumps(dict(cmd, id=i + 1)).encode())
        while json.loads(raw.recv_frame().payload).get("id") != i + 1:
            pass
    return room, sender, reader, raw


async def flood(gw, sender, reader, room, first, n, seen=None):
    """Sends n 4 KB messages; the reader must get every one, in order.
    Returns the reader's msg events; its other events go to seen."""
    text = "x" * 4000
    for i in range(first, first + n):
        await sender.ok("send", room=room, text=f"{i}:{text}")
    ms = []
    while len(ms) < n:
        m = await reader.event(timeout=60)
        if m.get("ev") == "msg" and m.get("room") == room:
            ms.append(m)
        elif seen is not None:
            seen.append(m)
    assert [m["text"].split(":")[0] for m in ms] == [str(i) for i in range(first, first + n)]
    return ms


async def slow_left(reader, room, seen):
    """Waits for the presence leave of "slow" (possibly already in seen)."""
    leave = dict(ev="presence", room=room, user="slow", state="leave")
    if not any(all(m.get(k) == v for k, v in leave.items()) for m in seen):
        await reader.event(timeout=10, **leave)


def slow_closed_logged(gw):
    return any("code=1013" in l and "user=slow" in l and "send buffer over limit" in l
               for l in gw.log_text().splitlines())


def read_slowly(raw, chunk=16384, pause=0.02, timeout=60):
    """Reads raw's socket at about chunk/pause bytes a second until EOF;
    returns the frames (opcode, fin, payload) and any bytes left over."""
    buf = raw.buf
    deadline = time.monotonic() + timeout
    raw.sock.settimeout(timeout)
    while time.monotonic() < deadline:
        data = raw.sock.recv(chunk)
        if not data:
            break
        buf += data
        time.sleep(pause)
    else:
        raise AssertionError(f"no EOF within {timeout}s ({len(buf)} bytes read)")
    frames, pos = [], 0
    while len(buf) - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n, hl = b1 & 0x7F, 2
        if n == 126:
            n, hl = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
        elif n == 127:
            n, hl = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
        if len(buf) - pos < hl + n:
            break
        frames.append((b0 & 0xF, bool(b0 & 0x80), buf[pos + hl:pos + hl + n]))
        pos += hl + n
    return frames, buf[pos:]


async def test_slow_consumer_closed_1013(gateway):
    # close_timeout bounds how long the slow client may stop taking bytes,
    # not how long it takes to read what the kernel holds for it
    gw = gateway(send_buffer_limit="64k", close_timeout="500ms", **FAST)
    room, sender, reader, raw = await slow_room(gw)
    # The raw member does not read while 2500 x 4 KB (10 MB) are sent: well
    # past the 64 KB queue plus what the kernel buffers on loopback (the
    # gateway's send buffer grows to tcp_wmem's 4 MB at most).
    n = 2500
    seen = []
    flooding = asyncio.ensure_future(flood(gw, sender, reader, room, 0, n, seen))
    deadline = time.monotonic() + 30
    while not slow_closed_logged(gw):  # the gateway logs the 1013 at once
        assert time.monotonic() < deadline and not flooding.done(), "no 1013 for the slow consumer"
        await asyncio.sleep(0.05)
    # It resumes reading at once, slowly (~800 KB/s: seconds for the MBs the
    # kernel holds, far past close_timeout): whole frames, a prefix of the room's
    # messages with none skipped in the middle, then the close frame 1013,
    # then the gateway's FIN without waiting for our close frame.
    frames, rest = await asyncio.to_thread(read_slowly, raw)
    ms = await flooding
    assert [m["seq"] for m in ms] == list(range(1, n + 1))
    assert rest == b"" and frames, (len(frames), rest[:20])
    seqs = []
    for opcode, fin, payload in frames[:-1]:
        assert opcode == pl.OP_TEXT and fin, (opcode, fin, payload[:40])
        m = json.loads(payload)
        if m.get("ev") == "msg":
            assert m["room"] == room and m["text"] == f"{m['seq'] - 1}:{'x' * 4000}", m["seq"]
            seqs.append(m["seq"])
    assert frames[-1][0] == pl.OP_CLOSE, (frames[-1][0], len(seqs))
    assert pl.decode_close(frames[-1][2])[0] == 1013
    assert seqs == list(range(1, len(seqs) + 1)) and 0 < len(seqs) < n, seqs[-3:]
    raw.close()
    # the others keep receiving; the slow client's session is gone
    ms = await flood(gw, sender, reader, room, n, 20, seen)
    assert [m["seq"] for m in ms] == list(range(n + 1, n + 21))
    await slow_left(reader, room, seen)
    pl.wait_for(lambda: open_gauge(gw) == 3, 5, what="slow client's connection freed")
    await sender.close()
    await reader.close()


async def test_slow_consumer_that_never_reads_is_freed(gateway):
    gw = gateway(send_buffer_limit="64k", close_timeout="1s", **FAST)
    room, sender, reader, raw = await slow_room(gw)
    assert open_gauge(gw) == 4  # sender, reader, raw and this scrape
    seen = []
    ms = await flood(gw, sender, reader, room, 0, 2500, seen)
    assert [m["seq"] for m in ms] == list(range(1, 2501))
    pl.wait_for(lambda: slow_closed_logged(gw), 10, what="slow consumer closed with 1013 (log)")
    # raw still does not read: after close_timeout the gateway drops it and
    # frees what it held, though the client never took the close frame
    pl.wait_for(lambda: open_gauge(gw) == 3, 10, what="slow client's connection freed")
    ms = await flood(gw, sender, reader, room, 2500, 20, seen)
    await slow_left(reader, room, seen)
    assert [m["seq"] for m in ms] == list(range(2501, 2521))
    raw.close()
    await sender.close()
    await reader.close()
