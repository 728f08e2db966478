"""
Helpers for the archiver's integration tests (test_archiver_*.py): making
stream entries the way the gateway does, pushing many of them quickly with
redis-cli --pipe, reading rows back binary-safe (HEX) and reading the
archiver's /metrics.
"""
import os
import re
import subprocess
import time

from . import pl

REPO = pl.REPO
MIGRATIONS = os.path.join(REPO, "deploy", "sql")


def unique(prefix):
    """A name no other test uses (streams and groups live in the shared Redis)."""
    return f"{prefix}:{os.getpid()}:{time.monotonic_ns()}"


def entry(room, seq, msg_id=None, sender="alice", text=None, ts=None):
    """The fields the gateway XADDs for one acknowledged message (bytes-safe)."""
    return {
        "room": room,
        "seq": str(seq),
        "msg_id": msg_id if msg_id is not None else f"m-{room}-{seq}",
        "from": sender,
        "text": text if text is not None else f"message {seq} in {room}",
        "ts": str(ts if ts is not None else 1764000000000 + seq),
    }


def _b(x):
    return x if isinstance(x, bytes) else str(x).encode()


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = _b(a)
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def xadd_many(redis, stream, entries):
    """XADDs every entry (dict of str|bytes) in order through redis-cli --pipe.
    Returns the count Redis acknowledged."""
    payload = b"".join(resp("XADD", stream, "*", *[x for kv in e.items() for x in kv])
                       for e in entries)
    r = subprocess.run([redis.cli_bin, "-h", redis.host, "-p", str(redis.port), "--pipe"],
                       input=payload, capture_output=True, timeout=120)
    m = re.search(rb"errors: (\d+), replies: (\d+)", r.stdout)
    assert r.returncode == 0 and m and m.group(1) == b"0", f"redis-cli --pipe: {r.stdout!r} {r.stderr!r}"
    return int(m.group(2))


def messages(n):
    """[(room, seq, msg_id)] of n plain messages spread over 10 rooms."""
    return [entry(f"room-{i % 10}", i // 10 + 1) for i in range(n)]


def count(db):
    return int(db.scalar("SELECT COUNT(*) FROM messages"))


def check_exactly(db, entries):
    """Every entry is stored once, with its msg_id, and nothing else is."""
    rows = db.query("SELECT room, seq, msg_id FROM messages")
    got = {(r[0], int(r[1])): r[2] for r in rows}
    assert len(rows) == len(got)
    want = {(e["room"], int(e["seq"])): e["msg_id"] for e in entries}
    missing = [k for k in want if k not in got]
    assert not missing, f"{len(missing)} messages missing, e.g. {missing[:5]}"
    extra = [k for k in got if k not in want]
    assert not extra, f"{len(extra)} unexpected rows, e.g. {extra[:5]}"
    wrong = [k for k in want if got[k] != want[k]]
    assert not wrong, f"{len(wrong)} rows with another msg_id, e.g. {wrong[:5]}"


def migrate(archiver, db):
    archiver.ok("migrate", mysql_url=db.url, migrations_dir=MIGRATIONS)


def metrics(a):
    """{name or name{labels}: float} from the archiver's /metrics."""
    status, _, body = a.http_get("/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        out[k] = float(v)
    return out


def wait_rows(db, n, timeout=60, proc=None):
    def done():
        if proc is not None and not proc.running():
            raise pl.Failure(f"archiver exited early ({proc.proc.returncode}):\n{pl.tail(proc.log)}")
        return count(db) >= n
    pl.wait_for(done, timeout=timeout, interval=0.1, what=f"{n} rows in messages")


def group_pending(redis, stream, group):
    out = redis.cli("XPENDING", stream, group).split("\n")
    return int(out[0]) if out and out[0] else 0


def cli_raw(redis, *args):
    """redis-cli output as bytes (entries may hold bytes that are not UTF-8)."""
    r = subprocess.run([redis.cli_bin, "-h", redis.host, "-p", str(redis.port)] +
                       [str(a) for a in args], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout
