"""
Helpers for the chat protocol tests (test_chat_*.py): a client that sorts
replies (by id) from events, so a test can wait for either without losing
the other, plus login helpers. Uses the fixtures and pl.py as they are.
"""
import asyncio
import json
import time

import websockets

from . import pl


class Chat:
    def __init__(self, ws, user=None):
        self.ws = ws
        self.user = user
        self.events = asyncio.Queue()
        self.others = asyncio.Queue()  # replies without id / unexpected
        self.replies = {}
        self.next_id = 1000
        self.close_info = None
        self.closed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._reader())

    async def _reader(self):
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                if isinstance(m, dict) and "ok" in m and "id" in m and m["id"] in self.replies:
                    fut = self.replies.pop(m["id"])
                    if not fut.done():
                        fut.set_result(m)
                elif isinstance(m, dict) and "ev" in m:
                    self.events.put_nowait(m)
                else:
                    self.others.put_nowait(m)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.close_info = (self.ws.close_code, self.ws.close_reason)
            self.closed.set()

    async def send_raw(self, data):
        await self.ws.send(data)

    async def cmd(self, op, timeout=5.0, **fields):
        """Sends {"op": op, "id": N, **fields} and returns the reply."""
        self.next_id += 1
        i = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.replies[i] = fut
        await self.ws.send(json.dumps(dict(op=op, id=i, **fields)))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no reply to {op} {fields} within {timeout}s")

    async def ok(self, op, **fields):
        r = await self.cmd(op, **fields)
        assert r.get("ok") is True, (op, fields, r)
        return r

    async def err(self, op, code, **fields):
        r = await self.cmd(op, **fields)
        assert r.get("ok") is False and r.get("error") == code, (op, fields, r)
        return r

    async def other(self, timeout=3.0):
        try:
            return await asyncio.wait_for(self.others.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no id-less message within {timeout}s")

    async def event(self, timeout=3.0, **fields):
        """Next event matching fields; events not matching are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event {fields} within {timeout}s")
            try:
                m = await asyncio.wait_for(self.events.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no event {fields} within {timeout}s")
            if all(m.get(k) == v for k, v in fields.items()):
                return m

    async def msgs(self, n, timeout=10.0, room=None):
        """The next n msg events (other events skipped)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(out)} of {n} messages within {timeout}s")
            try:
                m = await asyncio.wait_for(self.events.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"got {len(out)} of {n} messages within {timeout}s: "
                                     f"{[x.get('seq') for x in out[-5:]]}")
            if m.get("ev") == "msg" and (room is None or m.get("room") == room):
                out.append(m)
        return out

    async def no_event(self, timeout=0.4, ev=None):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                m = await asyncio.wait_for(self.events.get(), left)
            except asyncio.TimeoutError:
                return
            if ev is None or m.get("ev") == ev:
                raise AssertionError(f"unexpected event {m}")

    def drain(self):
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def wait_closed(self, timeout=5.0):
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"connection not closed within {timeout}s")
        return self.close_info

    async def close(self):
        await self.ws.close()
        try:
            await asyncio.wait_for(self.task, 5)
        except Exception:
            pass


async def open_ws(gw):
    ws = await websockets.connect(gw.url + "/ws", compression=None, ping_interval=None, max_size=None)
    return Chat(ws)


async def login(gw, user, **claims):
    """A connected, authenticated Chat for user (token from pl.token)."""
    c = await open_ws(gw)
    c.user = user
    r = await c.cmd("auth", token=pl.token(user, **claims))
    assert r["ok"] is True and r["user"] == user, r
    return c


# gateway options for tests that send faster than the default rate limit
FAST = {"rate_limit": 100000, "rate_burst": 100000}


def uniq(prefix="r"):
    """A room name no other test uses (the session Redis is shared)."""
    return f"{prefix}-{time.time_ns()}"


async def closeall(*cs):
    for c in cs:
        await c.close()


def metric(gw, name, **labels):
    """The node-wide value of a series (the sample without a worker label)."""
    _, _, body = gw.http_get("/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return int(line.rsplit(" ", 1)[1])
    return None


def start(gateway, archiver, fresh_redis, db, **opts):
    """A gateway on fresh_redis with MySQL history (schema migrated first)."""
    archiver.ok("migrate", mysql_url=db.url)
    o = dict(FAST)
    o.update(opts)
    return gateway(redis_url=fresh_redis.url, mysql_url=db.url, **o)


def drain(archiver, fresh_redis, db):
    """Runs `parley-archiver drain` until the archive stream is in MySQL."""
    a = archiver("drain", redis_url=fresh_redis.url, mysql_url=db.url)
    assert a.wait(120) == 0, a.log_text()
