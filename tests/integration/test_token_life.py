"""
Sessions end when their token does (issue 8): `refresh` replaces a
session's token (same user only; a narrower `rooms` claim leaves rooms with
a `left` event), a token that expires without a refresh closes the
connection with 4001 "token expired" and no command runs after its exp,
and the verifier checks nbf, iss/aud (when configured) and refuses every
alg but HS256.
"""
import asyncio
import hashlib
import hmac
import json
import time

from lib import pl
from lib.chatlib import login, open_ws, uniq


def payload_exp(tok):
    return json.loads(pl.b64url_decode(tok.split(".")[1]))["exp"]


async def auth_refused(gw, tok):
    """auth with tok: unauthorized and close 1008."""
    c = await open_ws(gw)
    await c.send_raw(json.dumps({"op": "auth", "id": 1, "token": tok}))
    m = await c.other(timeout=3)
    assert m["ok"] is False and m["error"] == "unauthorized", m
    code, _ = await c.wait_closed()
    assert code == 1008


async def auth_ok(gw, tok):
    c = await open_ws(gw)
    r = await c.cmd("auth", token=tok)
    assert r["ok"] is True, r
    await c.close()


def signed(header, payload, digest=hashlib.sha256, secret=b"test-secret"):
    """header.payload signed with HMAC-<digest> whatever header says."""
    h = pl.b64url(json.dumps(header).encode())
    p = pl.b64url(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{pl.b64url(sig)}"


async def test_refresh_ok_returns_new_exp(gateway):
    gw = gateway()
    c = await login(gw, "tl-alice", exp_in=60)
    tok = pl.token("tl-alice", exp_in=7200)
    r = await c.ok("refresh", token=tok)
    assert r["exp"] == payload_exp(tok), r
    assert set(r) == {"id", "ok", "exp"}, r
    await c.ok("join", room=uniq("tl"))
    await c.close()


async def test_far_future_exp_is_a_long_session(gateway):
    # any int64 exp is a valid claim: the expiry timer must not overflow
    gw = gateway()
    far = 2**63 - 1
    tok = pl.jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "tl-alice", "exp": far}, "test-secret")
    c = await open_ws(gw)
    assert (await c.cmd("auth", token=tok))["ok"] is True
    r = await c.ok("refresh", token=pl.jwt({"alg": "HS256"}, {"sub": "tl-alice", "exp": far - 1},
                                           "test-secret"))
    assert r["exp"] == far - 1
    await c.ok("join", room=uniq("tl"))
    await c.no_event(0.3)
    assert not c.closed.is_set()
    await c.close()


async def test_refresh_with_another_users_token_is_forbidden(gateway):
    gw = gateway()
    room = uniq("tl")
    alice = await login(gw, "tl-alice")
    bob = await login(gw, "tl-bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    await alice.err("refresh", "forbidden", token=pl.token("tl-bob", exp_in=7200))
    # still alice, still connected
    await alice.ok("send", room=room, text="still me")
    m = (await bob.msgs(1, room=room))[0]
    assert m["from"] == "tl-alice" and m["text"] == "still me"
    await alice.close()
    await bob.close()


async def test_refresh_with_invalid_token_is_unauthorized_and_keeps_session(gateway):
    gw = gateway()
    c = await login(gw, "tl-alice", exp_in=60)
    bad = pl.bad_tokens("tl-alice")
    for name in ("alg_none", "wrong_secret", "expired", "no_exp", "bad_signature", "garbage",
                 "empty"):
        await c.err("refresh", "unauthorized", token=bad[name])
    await c.err("refresh", "bad_request")  # no token at all
    # the old token still holds the session
    await c.ok("join", room=uniq("tl"))
    assert not c.closed.is_set()
    await c.close()


async def test_refresh_narrowing_rooms_leaves_them(gateway):
    gw = gateway()
    kept, lost = uniq("tl-kept"), uniq("tl-lost")
    alice = await login(gw, "tl-alice")
    bob = await login(gw, "tl-bob")
    for r in (kept, lost):
        await bob.ok("join", room=r)
        await alice.ok("join", room=r)
        await bob.event(ev="presence", room=r, user="tl-alice", state="join")
    alice.drain()

    await alice.ok("refresh", token=pl.token("tl-alice", rooms=[kept]))
    # the left event came before the reply (same socket, so it is queued already)
    evs = alice.drain()
    assert {"ev": "left", "room": lost, "reason": "forbidden"} in evs, evs
    assert not [e for e in evs if e.get("ev") == "left" and e.get("room") == kept], evs
    # the same path as a leave: presence announced to the others
    await bob.event(ev="presence", room=lost, user="tl-alice", state="leave")

    await bob.ok("send", room=lost, text="gone")
    await bob.ok("send", room=kept, text="here")
    m = (await alice.msgs(1))[0]
    assert (m["room"], m["text"]) == (kept, "here"), m
    await alice.no_event(0.5, ev="msg")
    r = await bob.ok("presence", room=lost)
    assert "tl-alice" not in r["users"], r
    # and it cannot come back with this token
    await alice.err("join", "forbidden", room=lost)
    await alice.err("send", "not_joined", room=lost, text="x")
    await alice.err("history", "forbidden", room=lost)
    await alice.close()
    await bob.close()


async def test_expiry_closes_4001_and_no_command_runs_after_exp(gateway):
    gw = gateway()
    room = uniq("tl")
    tok = pl.token("tl-alice", exp_in=3)
    exp = payload_exp(tok)
    c = await open_ws(gw)
    assert (await c.cmd("auth", token=tok))["ok"] is True
    await c.ok("join", room=room)
    ok_times = []
    while not c.closed.is_set() and time.time() < exp + 5:
        try:
            r = await c.cmd("history", timeout=0.3, room=room)
            if r.get("ok"):
                ok_times.append(time.time())
        except AssertionError:
            pass  # no reply: closing
        except Exception:
            break  # sending on a closed socket
        await asyncio.sleep(0.05)
    code, reason = await c.wait_closed(timeout=5)
    closed_at = time.time()
    assert (code, reason) == (4001, "token expired")
    assert exp - 0.1 <= closed_at <= exp + 1.5, (exp, closed_at)
    assert ok_times, "no command worked before exp"
    assert max(ok_times) < exp + 0.25, (exp, ok_times[-3:])


async def test_refresh_before_exp_keeps_the_connection(gateway):
    gw = gateway()
    room = uniq("tl")
    tok = pl.token("tl-alice", exp_in=3)
    old_exp = payload_exp(tok)
    c = await open_ws(gw)
    assert (await c.cmd("auth", token=tok))["ok"] is True
    await c.ok("join", room=room)
    await asyncio.sleep(1)
    await c.ok("refresh", token=pl.token("tl-alice", exp_in=3600))
    await asyncio.sleep(max(0.0, old_exp + 1.5 - time.time()))
    assert not c.closed.is_set(), c.close_info
    await c.ok("send", room=room, text="after the old exp")
    await c.ok("history", room=room)
    await c.close()


async def test_refresh_to_a_shorter_exp_rearms_the_timer(gateway):
    gw = gateway()
    c = await login(gw, "tl-alice", exp_in=3600)
    tok = pl.token("tl-alice", exp_in=2)
    await c.ok("refresh", token=tok)
    code, reason = await c.wait_closed(timeout=5)
    assert (code, reason) == (4001, "token expired")
    assert time.time() <= payload_exp(tok) + 1.5


async def test_nbf_in_the_future_refused(gateway):
    gw = gateway()
    now = int(time.time())
    await auth_refused(gw, pl.token("tl-alice", nbf=now + 3600))
    await auth_refused(gw, pl.token("tl-alice", nbf=str(now)))
    # past, now, and within the documented 30 s leeway: accepted
    await auth_ok(gw, pl.token("tl-alice", nbf=now - 60))
    await auth_ok(gw, pl.token("tl-alice", nbf=now + 5))
    c = await login(gw, "tl-alice")
    await c.err("refresh", "unauthorized", token=pl.token("tl-alice", nbf=now + 3600))
    await c.ok("join", room=uniq("tl"))
    await c.close()


async def test_iss_and_aud_checked_when_configured(gateway):
    gw = gateway(token_issuer="https://auth.test", token_audience="parley")
    iss = "https://auth.test"
    await auth_refused(gw, pl.token("tl-alice"))
    await auth_refused(gw, pl.token("tl-alice", iss=iss))  # no aud
    await auth_refused(gw, pl.token("tl-alice", aud="parley"))  # no iss
    await auth_refused(gw, pl.token("tl-alice", iss="https://evil.test", aud="parley"))
    await auth_refused(gw, pl.token("tl-alice", iss=iss, aud="other"))
    await auth_refused(gw, pl.token("tl-alice", iss=iss, aud=["other", "more"]))
    await auth_ok(gw, pl.token("tl-alice", iss=iss, aud="parley"))
    await auth_ok(gw, pl.token("tl-alice", iss=iss, aud=["other", "parley"]))
    c = await login(gw, "tl-alice", iss=iss, aud="parley")
    await c.err("refresh", "unauthorized", token=pl.token("tl-alice", iss="x", aud="parley"))
    await c.ok("refresh", token=pl.token("tl-alice", iss=iss, aud=["parley"]))
    await c.close()


async def test_iss_and_aud_ignored_when_not_configured(gateway):
    gw = gateway()
    await auth_ok(gw, pl.token("tl-alice", iss="https://anyone.test", aud="someone-else"))
    await auth_ok(gw, pl.token("tl-alice", aud=["a", "b"]))


async def test_algorithms_other_than_hs256_refused(gateway):
    gw = gateway()
    payload = {"sub": "tl-alice", "exp": int(time.time()) + 3600}
    toks = {
        "HS512": signed({"alg": "HS512", "typ": "JWT"}, payload, hashlib.sha512),
        "none": pl.jwt({"alg": "none", "typ": "JWT"}, payload, "test-secret"),
        "none_signed": signed({"alg": "none"}, payload),
        "RS256": signed({"alg": "RS256", "typ": "JWT"}, payload),
    }
    # the same signer with HS256 is accepted: only the alg differs
    await auth_ok(gw, signed({"alg": "HS256", "typ": "JWT"}, payload))
    for name, tok in toks.items():
        await auth_refused(gw, tok)
    c = await login(gw, "tl-alice")
    for name, tok in toks.items():
        await c.err("refresh", "unauthorized", token=tok)
    await c.close()
