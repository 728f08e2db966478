"""
One redis_url parser for both programs (common/redis_url.c): what
--check-config accepts is what the gateway's workers and the archiver
connect with, an IPv6 address in brackets works end to end, and a URL with
a password (alone, or with an ACL user) logs both programs in as the same
user.

Before: "redis://[::1]:P/0" passed --check-config, then every gateway
worker exited at start (the gateway split the host at its first ':'), and
"redis://user:pw@" made the archiver send "AUTH pw" (the default user's
password check) while the gateway sent "AUTH user pw".

Each test runs its own redis-server (bound to 127.0.0.1 and ::1, or with
requirepass and an ACL user).
"""
import os
import subprocess

import pytest

from lib import pl
from lib.chatlib import FAST, closeall, login, uniq


def redis_server(workdir, **kw):
    r = pl.Redis(os.path.join(workdir, "redis"), **kw)
    r.start()
    return r


@pytest.fixture
def redis_v6(workdir):
    r = redis_server(workdir, bind=("127.0.0.1", "::1"))
    yield r
    r.kill()


@pytest.fixture
def redis_acl(workdir):
    r = redis_server(workdir, password="default-pw")
    r.cli("ACL", "SETUSER", "parley", "on", ">parley-pw", "~*", "&*", "+@all")
    yield r
    r.kill()


def check_config(prog, *args):
    argv = [pl.binary(prog)]
    if prog == "archiver":
        # no --check-config: a bad value exits 2 while loading, before connecting
        argv += ["run", "--metrics_listen", "", "--mysql_url", "mysql://u@127.0.0.1:1/db"]
    else:
        argv += ["--check-config"]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=10,
                          env=pl.clean_env())


def test_check_config_accepts_and_rejects_what_the_programs_do():
    good = ["redis://[::1]:6379/0", "redis://u:p@[::1]/2", "redis://:pw@h:1", "redis://pw@h",
            "unix:///tmp/r.sock?db=2", "/tmp/r.sock"]
    bad = ["redis://::1:6379/0", "redis://[::1/0", "redis://h:0", "redis://h/x", "redis://h/0?x=1",
           "unix://rel.sock", "/tmp/r.sock?db=x", "http://h"]
    for url in good:
        p = check_config("gateway", "--redis_url", url)
        assert p.returncode == 0, (url, p.stderr)
    for url in bad:
        for prog in ("gateway", "archiver"):
            p = check_config(prog, "--redis_url", url)
            assert p.returncode == 2, (prog, url, p.returncode, p.stderr)
            assert "redis_url" in p.stderr, (prog, url, p.stderr)


async def chat_roundtrip(gw):
    """Sends one message through the gateway (so through its Redis) and
    returns (room, seq) once another member got it."""
    room = uniq("url")
    alice, bob = await login(gw, "alice"), await login(gw, "bob")
    await alice.ok("join", room=room)
    await bob.ok("join", room=room)
    ack = await alice.ok("send", room=room, text="over the url")
    await bob.event(ev="msg", room=room, seq=ack["seq"], text="over the url")
    await closeall(alice, bob)
    return room, ack["seq"]


def db_text(db, room):
    return db.query(f"SELECT seq, text FROM messages WHERE room='{room}'")


def archive_and_check(archiver, url, db, room, seq):
    """parley-archiver drain with the same redis_url stores the message."""
    archiver.ok("migrate", mysql_url=db.url)
    a = archiver("drain", redis_url=url, mysql_url=db.url)
    assert a.wait(60) == 0, a.log_text()
    assert db_text(db, room) == [(str(seq), "over the url")]


async def test_gateway_and_archiver_over_ipv6(gateway, archiver, redis_v6, fresh_database):
    url = f"redis://[::1]:{redis_v6.port}/0"
    assert check_config("gateway", "--redis_url", url).returncode == 0
    gw = gateway(redis_url=url, **FAST)
    pids = sorted(gw.worker_pids())
    room, seq = await chat_roundtrip(gw)
    # the workers that served it are the ones that started: none exited
    assert sorted(gw.worker_pids()) == pids
    assert "worker died" not in gw.log_text() and "worker exited" not in gw.log_text()
    clients = redis_v6.cli("CLIENT", "LIST")
    assert "addr=[::1]" in clients or "addr=::1" in clients, clients
    archive_and_check(archiver, url, fresh_database, room, seq)


async def test_acl_user_and_password_log_both_programs_in(gateway, archiver, redis_acl,
                                                          fresh_database):
    url = f"redis://parley:parley-pw@127.0.0.1:{redis_acl.port}/0"
    gw = gateway(redis_url=url, **FAST)
    room, seq = await chat_roundtrip(gw)
    archiver.ok("migrate", mysql_url=fresh_database.url)
    a = archiver("run", redis_url=url, mysql_url=fresh_database.url)
    pl.wait_for(lambda: fresh_database.scalar(
        f"SELECT COUNT(*) FROM messages WHERE room='{room}'") == "1", 30, what="archived row")
    # every connection of both programs is the ACL user, none the default
    users = [f.split("=", 1)[1] for line in redis_acl.cli("CLIENT", "LIST").splitlines()
             for f in line.split() if f.startswith("user=")]
    # 2 workers x (command + subscription), the archiver's reader pair and
    # each writer's ack pair, plus this redis-cli (the default user)
    assert users.count("parley") >= 2 * 2 + 2, users
    assert users.count("default") == 1, users
    assert a.stop() == 0
    assert db_text(fresh_database, room) == [(str(seq), "over the url")]


async def test_password_alone_logs_both_programs_in(gateway, archiver, redis_acl, fresh_database):
    for url in (f"redis://:default-pw@127.0.0.1:{redis_acl.port}/0",
                f"redis://default-pw@127.0.0.1:{redis_acl.port}/0"):
        gw = gateway(redis_url=url, **FAST)
        room, seq = await chat_roundtrip(gw)
        assert gw.stop() == 0
        archive_and_check(archiver, url, fresh_database, room, seq)
