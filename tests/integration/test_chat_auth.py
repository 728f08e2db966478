"""
Chat auth: the first frame must be a valid auth within auth_timeout; every
kind of bad token gets an unauthorized reply and close 1008.
"""
import asyncio
import json

import pytest

from lib import pl
from lib.chatlib import login, open_ws, uniq


async def expect_refused(gw, first_frame, expect_id=True):
    c = await open_ws(gw)
    await c.send_raw(first_frame)
    m = await c.other(timeout=3) if not expect_id else None
    if expect_id:
        # replies with an id land in .others too (nobody awaits that id)
        m = await c.other(timeout=3)
    assert m["ok"] is False and m["error"] == "unauthorized", m
    code, _ = await c.wait_closed()
    assert code == 1008
    return m


@pytest.mark.parametrize("name", ["alg_none", "wrong_secret", "expired", "no_exp", "no_sub",
                                  "tampered_payload", "bad_signature", "garbage", "empty"])
async def test_bad_tokens_refused(gateway, name):
    gw = gateway()
    tok = pl.bad_tokens("mallory")[name]
    m = await expect_refused(gw, json.dumps({"op": "auth", "id": 1, "token": tok}))
    assert m["id"] == 1


async def test_bad_sub_refused(gateway):
    gw = gateway()
    tok = pl.token("bad user!")
    await expect_refused(gw, json.dumps({"op": "auth", "id": 3, "token": tok}))
    tok = pl.token("x" * 65)
    await expect_refused(gw, json.dumps({"op": "auth", "id": 3, "token": tok}))


async def test_non_auth_first_refused(gateway):
    gw = gateway()
    m = await expect_refused(gw, json.dumps({"op": "join", "id": 5, "room": "lobby"}))
    assert m["id"] == 5
    await expect_refused(gw, "not json")
    await expect_refused(gw, json.dumps([1, 2]))


async def test_auth_timeout(gateway):
    gw = gateway(auth_timeout="500ms")
    c = await open_ws(gw)
    m = await c.other(timeout=3)
    assert m["ok"] is False and m["error"] == "unauthorized"
    code, _ = await c.wait_closed()
    assert code == 1008


async def test_secret_file(gateway, workdir):
    path = workdir + "/secret"
    with open(path, "w") as f:
        f.write("file-secret\n")
    gw = gateway(token_secret=None, token_secret_file=path)
    c = await open_ws(gw)
    r = await c.cmd("auth", token=pl.token("alice", secret="file-secret"))
    assert r["ok"] is True
    await c.close()
    c = await open_ws(gw)
    await c.send_raw(json.dumps({"op": "auth", "id": 1, "token": pl.token("alice")}))
    m = await c.other()
    assert m["error"] == "unauthorized"


async def test_second_auth_is_bad_request(gateway):
    gw = gateway()
    c = await login(gw, "alice")
    await c.err("auth", "bad_request", token=pl.token("bob"))
    r = await c.ok("join", room=uniq())
    assert r["seq"] == 0
    await c.close()


async def test_rooms_claim(gateway):
    gw = gateway()
    c = await login(gw, "alice", rooms=["lobby-claim", "team:*"])
    await c.ok("join", room="lobby-claim")
    await c.ok("join", room="team:" + uniq())
    await c.err("join", "forbidden", room="other-" + uniq())
    await c.err("history", "forbidden", room="other-" + uniq())
    await c.err("send", "not_joined", room="other-" + uniq(), text="x")
    # dm rooms ignore the claim but need the user to be one of the two
    await c.ok("join", room="dm:alice:zed")
    await c.err("join", "forbidden", room="dm:bob:zed")
    await c.err("join", "forbidden", room="dm:zed:alice")  # not sorted = not a dm room of anyone
    await c.close()
