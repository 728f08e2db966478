"""
History pages are the same BYTES whether they come from Redis or MySQL
(docs/protocol.md 1.5, 3.4): the gateway rebuilds archived events with its
own JSON string escaper, which must write exactly what jansson wrote for
the send script (control characters as \\u00XX in upper case, DEL and
U+2028 raw, "/" unescaped), and the ts it reads from MySQL must be the
send's ts to the millisecond whatever the server's time zone.
"""
import json

import websockets

from lib import pl
from lib.chatlib import FAST, closeall, login, uniq
from test_history_mysql import drain, send_many, start

TEXTS = [
    "ctl \x01\x02\x07\x08\x0b\x0c\x0e\x1b\x1f end",
    "tab\tnl\ncr\r ff\f bs\b",
    'q " bs \\ slash / </script>',
    "del \x7f line sep \u2028 para sep \u2029",
    "nul \u0000 twice \u0000",
    "2-byte \u00e9 3-byte \u20ac\u65e5 4-byte \U0001F600\U0010FFFF",
    "\ufeff bom \uffff",
]


async def raw_history(gw, user, room, limit):
    """The reply to one history request as the exact bytes received."""
    ws = await websockets.connect(gw.url + "/ws", compression=None, ping_interval=None,
                                  max_size=None)
    try:
        await ws.send(json.dumps({"op": "auth", "id": 1, "token": pl.token(user)}))
        await ws.send(json.dumps({"op": "history", "id": 2, "room": room, "limit": limit}))
        while True:
            raw = await ws.recv()
            if json.loads(raw).get("id") == 2:
                return raw.encode() if isinstance(raw, str) else raw
    finally:
        await ws.close()


def messages_bytes(raw):
    start, end = raw.index(b'"messages":['), raw.rindex(b'],"more":')
    return raw[start + len(b'"messages":['):end]


async def test_history_page_from_mysql_is_byte_identical_to_redis(gateway, archiver,
                                                                  fresh_redis, fresh_database,
                                                                  mariadb):
    db = fresh_database
    gw = start(gateway, archiver, fresh_redis, db)
    room = uniq("bytes.r:o_o-m")
    alice = await login(gw, "b-alice")
    await alice.ok("join", room=room)
    acks = await send_many(alice, room, TEXTS)
    from_redis = await raw_history(gw, "b-alice", room, 100)
    drain(archiver, fresh_redis, db)
    fresh_redis.cli("FLUSHALL")  # now the page can only come from MySQL
    # The gateway's pool connects on its first query, i.e. below: a server
    # time zone other than UTC must not move ts (created_at is UTC).
    mariadb.query("SET GLOBAL time_zone = '+05:30'")
    try:
        from_mysql = await raw_history(gw, "b-alice", room, 100)
    finally:
        mariadb.query("SET GLOBAL time_zone = SYSTEM")
    assert messages_bytes(from_mysql) == messages_bytes(from_redis)
    ms = json.loads(from_mysql)["messages"]
    assert [m["text"] for m in ms] == TEXTS
    assert [(m["seq"], m["ts"]) for m in ms] == [(a["seq"], a["ts"]) for a in acks]
    assert b"\\u001F" in from_mysql and b"\x7f" in from_mysql
    await closeall(alice)
