"""
Issue 8, "Configuration and process faults", the archive items:
- max_text_size above what the archiver stores (65535 bytes, a TEXT column)
  is refused by --check-config and at start, with a reason naming the limit;
- archive = off: sends work and parley:archive is never written (a
  Redis-only deployment no longer grows it forever); archive = off with
  mysql_url is refused (nothing would fill MySQL);
- the gateway's /metrics shows the stream's length and the oldest
  unarchived entry's age, growing while no archiver runs and back to 0 once
  one catches up;
- `parley-archiver drain` exits 0 beside a running `run` with the same
  metrics_listen (it used to exit 1 failing to bind the port).
Redis is a fresh one per test where the test reads parley:archive (every
gateway of the session Redis appends to it).
"""
import subprocess
import time

from lib import archutil as au
from lib import chatlib as cl
from lib import pl

ARCHIVE = "parley:archive"

def check_config(*args):
    r = subprocess.run([pl.binary("gateway"), "--check-config", "--token_secret", "s"] +
                       [str(a) for a in args], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def gw_metrics(gw):
    """{series without labels: value} from the gateway's /metrics."""
    status, _, body = gw.http_get("/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


async def send_n(gw, room, n, user="alice"):
    c = await cl.login(gw, user)
    await c.ok("join", room=room)
    seqs = [(await c.ok("send", room=room, text=f"m{i}"))["seq"] for i in range(n)]
    await c.close()
    return seqs


# ---------------------------------------------------------------- max_text_size

def test_check_config_refuses_text_over_archiver_limit():
    rc, out = check_config("--max_text_size", "65535")
    assert rc == 0, out
    for v in ("64k", "65536", "1m"):
        rc, out = check_config("--max_text_size", v)
        assert rc == 2, (v, out)
        assert "max_text_size" in out and "65535" in out and "archiver" in out, out


def test_start_refuses_text_over_archiver_limit(gateway):
    gw = gateway(wait=False, max_text_size="100k")
    assert gw.wait(15) == 2
    assert "65535" in gw.log_text()


# ---------------------------------------------------------------- archive on/off

def test_check_config_refuses_archive_off_with_mysql(mariadb):
    rc, out = check_config("--archive", "off", "--mysql_url", mariadb.url)
    assert rc == 2, out
    assert "archive" in out and "mysql_url" in out and "unknown" not in out, out
    rc, out = check_config("--archive", "off")
    assert rc == 0, out
    rc, out = check_config("--archive", "on", "--mysql_url", mariadb.url)
    assert rc == 0, out


async def test_archive_off_writes_no_stream(gateway, fresh_redis):
    r = fresh_redis
    gw = gateway(redis_url=r.url, archive=False)
    room = cl.uniq("noarch")
    assert await send_n(gw, room, 5) == [1, 2, 3, 4, 5]
    # history still comes from Redis
    c = await cl.login(gw, "bob")
    await c.ok("join", room=room)
    h = await c.ok("history", room=room, limit=10)
    assert [m["seq"] for m in h["messages"]] == [1, 2, 3, 4, 5]
    await c.close()
    assert r.cli("EXISTS", ARCHIVE).strip() == "0"
    # no stream, so no gauges for it
    m = gw_metrics(gw)
    assert "parley_archive_stream_length" not in m
    # the same sends with archive on (the default) do append
    gw.stop()
    gw2 = gateway(redis_url=r.url)
    await send_n(gw2, room, 3)
    assert r.cli("XLEN", ARCHIVE).strip() == "3"


# ---------------------------------------------------------------- backlog gauges

async def test_metrics_show_backlog_until_archiver_catches_up(gateway, archiver, fresh_redis,
                                                              fresh_database):
    r, db = fresh_redis, fresh_database
    au.migrate(archiver, db)
    gw = gateway(redis_url=r.url, mysql_url=db.url)
    room = cl.uniq("backlog")
    await send_n(gw, room, 4)
    # no archiver has ever run: every entry is unarchived
    pl.wait_for(lambda: gw_metrics(gw).get("parley_archive_stream_length") == 4, timeout=10,
                what="stream length 4 on /metrics")
    age1 = gw_metrics(gw)["parley_archive_oldest_unarchived_seconds"]
    time.sleep(3.5)
    m = gw_metrics(gw)
    assert m["parley_archive_oldest_unarchived_seconds"] >= age1 + 2, (age1, m)
    # an archiver catches up and trims: both drop to 0
    a = archiver("run", redis_url=r.url, mysql_url=db.url, block_ms="200ms",
                 trim_interval="200ms")
    au.wait_rows(db, 4, proc=a)
    pl.wait_for(lambda: gw_metrics(gw).get("parley_archive_stream_length") == 0 and
                gw_metrics(gw).get("parley_archive_oldest_unarchived_seconds") == 0,
                timeout=15, what="length and age 0 after the archiver caught up")
    # stopped again (the group now exists): new entries age from their send
    a.stop()
    await send_n(gw, room, 2)
    pl.wait_for(lambda: gw_metrics(gw).get("parley_archive_stream_length") == 2, timeout=10,
                what="stream length 2 with the archiver stopped")
    time.sleep(2.5)
    assert gw_metrics(gw)["parley_archive_oldest_unarchived_seconds"] >= 1


# ---------------------------------------------------------------- drain beside run

def test_drain_beside_run_same_metrics_listen(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-drain-beside")
    au.migrate(archiver, db)
    listen = f"127.0.0.1:{pl.free_port()}"
    o = {"mysql_url": db.url, "stream": stream, "block_ms": "200ms", "metrics_listen": listen}
    run = archiver("run", **o)
    entries = au.messages(2000)
    au.xadd_many(redis, stream, entries)
    d = archiver("drain", **o)
    assert d.wait(60) == 0, d.log_text()
    assert "cannot start metrics server" not in d.log_text()
    # run kept its port and keeps going
    assert run.running() and run.healthy()
    au.wait_rows(db, len(entries), proc=run)
    au.check_exactly(db, entries)
