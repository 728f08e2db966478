"""
Smoke tests of the fixtures and helpers themselves (conftest.py, lib/pl.py):
if these fail, every other integration test's result means nothing.
"""
import hashlib
import hmac
import json
import os
import re
import subprocess
import signal

from lib import pl


def test_redis_answers_ping(redis):
    assert redis.cli("PING") == "PONG"
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"


def test_fresh_redis_stops_and_restarts(fresh_redis, redis):
    assert fresh_redis.port != redis.port
    fresh_redis.cli("SET", "k", "v")
    fresh_redis.stop()
    assert not pl.port_open(fresh_redis.port)
    fresh_redis.start()
    assert fresh_redis.cli("PING") == "PONG"
    assert fresh_redis.cli("GET", "k") == ""  # nothing persisted


def test_mariadb_answers_select_1(mariadb):
    assert mariadb.query("SELECT 1") == [("1",)]
    # the parley user reaches parley_test over TCP with the url's password
    assert mariadb.query_as_parley("SELECT DATABASE()") == [("parley_test",)]


def test_fresh_database_is_empty_and_usable(fresh_database, mariadb):
    db = fresh_database
    assert db.url.endswith("/" + db.name)
    assert db.query("SHOW TABLES") == []
    mariadb.query_as_parley("CREATE TABLE t (id INT PRIMARY KEY, s TEXT); INSERT INTO t VALUES (1, NULL)", db.name)
    assert db.query("SELECT id, s FROM t") == [("1", None)]


def test_token_is_a_valid_hs256_jwt(token):
    t = token("alice", room="r1")
    h, p, s = t.split(".")
    assert json.loads(pl.b64url_decode(h)) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(pl.b64url_decode(p))
    assert claims["sub"] == "alice" and claims["room"] == "r1" and claims["exp"] > claims["iat"]
    want = hmac.new(b"test-secret", f"{h}.{p}".encode(), hashlib.sha256).digest()
    assert pl.b64url_decode(s) == want
    bad = pl.bad_tokens("alice")
    assert bad["alg_none"].endswith(".") and "exp" not in json.loads(pl.b64url_decode(bad["no_exp"].split(".")[1]))


def test_frame_codec_round_trip():
    raw = pl.encode_frame(pl.OP_CLOSE, pl.close_payload(1002, "bad"), mask=False)
    assert raw == b"\x88\x05\x03\xeabad"
    assert pl.decode_close(raw[2:]) == (1002, "bad")
    masked = pl.encode_frame(pl.OP_TEXT, b"x" * 300, mask_key=b"\x01\x02\x03\x04")
    assert masked[1] == 0x80 | 126 and len(masked) == 2 + 2 + 4 + 300
    assert pl.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_gateway_healthz_and_workers(gateway):
    gw = gateway()
    status, _, _ = gw.http_get("/healthz")
    assert status == 200
    pl.wait_for(lambda: len(gw.worker_pids()) == 2, 5, what="2 workers")
    assert gw.stop(signal.SIGTERM) == 0
    assert not pl.port_open(gw.port)


def test_archiver_migrate_and_run(archiver, fresh_database):
    log = archiver.ok("migrate", mysql_url=fresh_database.url)
    assert "messages" in [r[0] for r in fresh_database.query("SHOW TABLES")], log
    a = archiver("run", mysql_url=fresh_database.url)  # waits for its /healthz
    assert a.http_get("/metrics")[0] == 200
    assert a.stop(signal.SIGTERM) == 0


def test_gateway_conf_example_is_valid_and_complete():
    """deploy/parley-gateway.conf.example loads, and lists every key --help shows."""
    example = os.path.join(pl.REPO, "deploy", "parley-gateway.conf.example")
    gw = pl.binary("gateway")
    r = subprocess.run([gw, "-c", example, "--check-config"], capture_output=True, text=True,
                       env=pl.clean_env(), timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    usage = subprocess.run([gw, "--help"], capture_output=True, text=True, timeout=10).stdout
    keys = re.findall(r"^\s+--(\w+)\s", usage.split("\nkeys", 1)[1], re.M)
    assert len(keys) > 10
    text = open(example).read()
    missing = [k for k in keys if not re.search(rf"^{k} =", text, re.M)]
    assert not missing, f"keys missing from {example}: {missing}"
