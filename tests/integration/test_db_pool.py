"""
gateway/store/db.c, the worker's asynchronous MariaDB pool, checked through
tests/dbcheck/dbcheck (built by `make check`) against the session MariaDB:
max seq, history pages, hostile bytes, concurrency over a small pool, a
loop that keeps ticking while the database is slow, stopped or hung, and
reconnection once it is back.

Each test gets a fresh database with the archiver's schema (deploy/sql),
fills it with hex literals (so NUL bytes and quotes reach the table as
they are) and compares what dbcheck prints (hex) byte for byte.
"""
import calendar
import datetime
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest

from lib import pl

REQUEST_TIMEOUT = 3.0  # PL_DB_REQUEST_TIMEOUT_MS
SLACK = 1.5            # scheduling and sanitizer overhead on a 2-core machine
SQL_DIR = os.path.join(pl.REPO, "deploy", "sql")
HOSTILE_ROOM = "it's \"q\" \\ 😀 %_"


_made = []


def dbcheck_bin():
    """The driver: a check program, which a plain `make` does not build, so
    it is made here (once per session) when the build dir has a Makefile."""
    path = os.path.join(pl.build_dir(), "tests", "dbcheck", "dbcheck")
    if not _made and os.path.exists(os.path.join(pl.build_dir(), "Makefile")):
        r = subprocess.run(["make", "-s", "-C", pl.build_dir(), "tests/dbcheck/dbcheck"],
                           capture_output=True, text=True, timeout=600)
        _made.append(None if r.returncode == 0 else
                     f"make tests/dbcheck/dbcheck failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    if _made and _made[0]:
        raise pl.Failure(_made[0])
    if not os.access(path, os.X_OK):
        raise pl.Failure(f"{path} not found: it is a check program, build it with `make check` "
                         f"(or `make tests/dbcheck/dbcheck`) in {pl.build_dir()}")
    return path


def hexarg(s):
    b = s.encode() if isinstance(s, str) else s
    return "hex:" + b.hex()


def lit(s):
    """A SQL literal for any bytes: text as utf8mb4, bytes as binary."""
    if isinstance(s, str):
        return f"_utf8mb4 X'{s.encode().hex()}'"
    return f"X'{s.hex()}'"


def ts_ms(created):
    d = datetime.datetime.strptime(created, "%Y-%m-%d %H:%M:%S.%f")
    return calendar.timegm(d.timetuple()) * 1000 + d.microsecond // 1000


def insert(db, room, rows):
    """rows: (seq, msg_id bytes, sender str, text str, created 'Y-m-d H:M:S.fff')."""
    for i in range(0, len(rows), 200):
        vals = ",".join(f"({lit(room)},{seq},{lit(mid)},{lit(snd)},{lit(txt)},'{cr}')"
                        for seq, mid, snd, txt, cr in rows[i:i + 200])
        db.query("INSERT INTO messages (room, seq, msg_id, sender, text, created_at) VALUES " + vals)


def simple_rows(seqs, prefix="m"):
    return [(s, f"{prefix}{s}".encode(), "alice", f"hello {s}",
             f"2026-01-02 03:04:{s % 60:02d}.{(s * 7) % 1000:03d}") for s in seqs]


def check_log(text):
    m = pl.CRASH_RE.search(text)
    assert not m, f"dbcheck crashed or a sanitizer reported:\n{text[-4000:]}"


def run(url, *args, pool=None, timeout=60):
    """Runs one dbcheck scenario; returns (exit code, parsed output lines, stderr)."""
    argv = [dbcheck_bin()] + (["--pool", str(pool)] if pool else []) + [url] + [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, timeout=timeout, env=pl.clean_env())
    err = r.stderr.decode(errors="replace")
    check_log(err)
    return r.returncode, [json.loads(line) for line in r.stdout.decode().splitlines() if line], err


def summary(lines):
    return [x for x in lines if "status" in x][-1]


def history(url, room, before, limit):
    rc, lines, err = run(url, "history", hexarg(room), before, limit)
    s = summary(lines)
    assert rc == 0 and s["status"] == "ok", (rc, lines, err)
    rows = [x for x in lines if "row" in x]
    assert len(rows) == s["n"]
    return rows


class Repl:
    """dbcheck in repl mode: one pool for the whole test, commands on stdin,
    answers (with elapsed_ms and timer ticks) read back by id."""

    def __init__(self, url, logdir, pool=2):
        self.log = os.path.join(logdir, "dbcheck.log")
        self._logf = open(self.log, "wb")
        self.p = subprocess.Popen([dbcheck_bin(), "--pool", str(pool), url, "repl"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._logf, env=pl.clean_env())
        self.ids = itertools.count(1)
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.pending = {}

    def _read(self):
        for line in self.p.stdout:
            self.q.put(json.loads(line))
        self.q.put(None)

    def send(self, op, *args):
        i = next(self.ids)
        self.p.stdin.write((" ".join([str(i), op] + [str(a) for a in args]) + "\n").encode())
        self.p.stdin.flush()
        return i

    def wait(self, i, timeout):
        deadline = time.monotonic() + timeout
        rows = []
        while i not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise pl.Failure(f"dbcheck gave no answer to request {i} within {timeout}s "
                                 f"(the pool hung):\n{pl.tail(self.log)}")
            try:
                m = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                raise pl.Failure(f"dbcheck exited early:\n{pl.tail(self.log)}")
            if "row" in m:
                self.pending.setdefault(("rows", m["id"]), []).append(m)
            else:
                self.pending[m["id"]] = m
        m = self.pending.pop(i)
        m["rows"] = self.pending.pop(("rows", i), rows)
        return m

    def call(self, op, *args, timeout=REQUEST_TIMEOUT + 10):
        return self.wait(self.send(op, *args), timeout)

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise pl.Failure(f"dbcheck did not exit at EOF:\n{pl.tail(self.log)}")
        self._logf.close()
        with open(self.log, errors="replace") as f:
            check_log(f.read())
        assert self.p.returncode == 0, pl.tail(self.log)


@pytest.fixture
def archive(fresh_database):
    """A fresh database with the archiver's migrations applied."""
    names = sorted(n for n in os.listdir(SQL_DIR) if n.endswith(".sql"))
    assert names, f"no migrations in {SQL_DIR}"
    for name in names:
        with open(os.path.join(SQL_DIR, name)) as f:
            fresh_database.query(f.read())
    return fresh_database


@pytest.fixture
def repl(archive, workdir):
    started = []

    def start(pool=2):
        r = Repl(archive.url, workdir, pool)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def assert_ticking(m):
    # A 10 ms timer: a blocked loop would show (almost) no ticks.
    assert m["ticks"] >= m["elapsed_ms"] / 10 * 0.6 - 2, m


# ---------------------------------------------------------------- results


def test_max_seq(archive):
    insert(archive, "r1", simple_rows([3, 10, 42]))
    insert(archive, "r10", simple_rows([99]))
    insert(archive, HOSTILE_ROOM, simple_rows([7]))
    cases = {"r1": 42, "r10": 99, HOSTILE_ROOM: 7, "nobody": 0, "r": 0, "R1": 0, "r1 ": 0, "": 0}
    for room, want in cases.items():
        rc, lines, err = run(archive.url, "maxseq", hexarg(room))
        assert rc == 0, err
        assert lines[-1]["status"] == "ok" and lines[-1]["max_seq"] == want, (room, lines)


def test_history_pages_are_oldest_first_and_bounded(archive):
    rows = simple_rows(range(1, 26))
    insert(archive, "hist", rows)
    insert(archive, "hist2", simple_rows(range(1, 40), "x"))
    insert(archive, "his", simple_rows(range(1, 5), "y"))
    by_seq = {r[0]: r for r in rows}

    def seqs(before, limit):
        return [r["seq"] for r in history(archive.url, "hist", before, limit)]

    assert seqs(26, 10) == list(range(16, 26))
    assert seqs(16, 10) == list(range(6, 16))
    assert seqs(6, 10) == list(range(1, 6))
    assert seqs(1, 10) == []
    assert seqs(0, 10) == []
    assert seqs(26, 0) == []
    assert seqs(13, 100) == list(range(1, 13))
    assert seqs(2**64 - 1, 3) == [23, 24, 25]
    for r in history(archive.url, "hist", 100, 100):
        seq, mid, snd, txt, cr = by_seq[r["seq"]]
        assert bytes.fromhex(r["msg_id"]) == mid
        assert bytes.fromhex(r["sender"]).decode() == snd
        assert bytes.fromhex(r["text"]).decode() == txt
        assert r["ts_ms"] == ts_ms(cr)
    assert history(archive.url, "nobody", 100, 10) == []


def test_hostile_bytes_round_trip_exactly(archive):
    texts = [
        "it's",
        'say "hi"',
        "back\\slash\\",
        "nul\x00in\x00the middle\x00",
        "\x00",
        "",
        "😀🎉 4-byte emoji, 漢字, é",
        "'; DROP TABLE messages; --",
        "\\'\\\"\\x00%_",
        "".join(chr(c) for c in range(1, 32)) + "\x7f",
        "line\nbreaks\r\nand\ttabs",
        ("long 🙂 " * 6000)[:60000],
    ]
    rows = [(i + 1, bytes([0, 255, 39, 92, i]), f"o'neil \"{i}\" \\ 😀", t,
             f"2026-11-25 20:00:{i:02d}.{i * 37 % 1000:03d}") for i, t in enumerate(texts)]
    insert(archive, HOSTILE_ROOM, rows)
    got = history(archive.url, HOSTILE_ROOM, 2**63, 100)
    assert [r["seq"] for r in got] == list(range(1, len(texts) + 1))
    for r, (seq, mid, snd, txt, cr) in zip(got, rows):
        assert bytes.fromhex(r["text"]) == txt.encode(), seq
        assert bytes.fromhex(r["msg_id"]) == mid, seq
        assert bytes.fromhex(r["sender"]) == snd.encode(), seq
        assert r["ts_ms"] == ts_ms(cr), seq
    rc, lines, err = run(archive.url, "maxseq", hexarg(HOSTILE_ROOM))
    assert lines[-1]["max_seq"] == len(texts)


# ---------------------------------------------------------------- the pool


def test_concurrent_requests_share_a_small_pool(archive):
    insert(archive, "busy", simple_rows(range(1, 31)))
    for pool in (2, 4):
        rc, lines, err = run(archive.url, "concurrent", 40, hexarg("busy"), pool=pool)
        s = lines[-1]
        assert rc == 0, (lines, err)
        assert s["ok"] == 40 and s["failed"] == 0 and s["rows"] == 30, s
        assert 1 <= s["busy_max"] <= pool and s["connects"] <= pool, s


def test_queue_is_bounded(archive):
    # All submitted before the loop runs: 1024 (PL_DB_QUEUE_MAX) queue, the rest fail busy.
    rc, lines, err = run(archive.url, "concurrent", 1100, hexarg("none"))
    s = lines[-1]
    assert rc == 1 and s["ok"] == 1024 and s["failed"] == 76, s
    assert "busy" in err


def test_slow_query_does_not_block_the_loop(archive):
    rc, lines, err = run(archive.url, "timer")
    m = lines[-1]
    assert rc == 0 and m["status"] == "ok", (lines, err)
    # SLEEP(1) is timed in whole ms on both sides: 999 is one second too
    assert 990 <= m["elapsed_ms"] < 1000 + SLACK * 1000, m
    assert m["ticks"] >= 70, m  # ~100 expected for a 10 ms timer over 1 s


def test_hung_query_fails_within_the_request_timeout(repl):
    r = repl()
    m = r.call("exec", hexarg("SELECT SLEEP(10)"))
    assert m["status"] in ("timeout", "lost"), m
    assert m["elapsed_ms"] <= (REQUEST_TIMEOUT + SLACK) * 1000, m
    assert_ticking(m)
    m = r.call("maxseq", hexarg("r"))
    assert m["status"] == "ok", m


def test_request_deadline_counts_from_submission(repl):
    # One connection: the second statement waits 1.5 s in the queue, then
    # runs; the deadline (3 s after submission) ends it while it runs, before
    # the client library's own 2 s read timeout would, and the pool recovers.
    r = repl(pool=1)
    a = r.send("exec", hexarg("SELECT SLEEP(1.5)"))
    b = r.send("exec", hexarg("SELECT SLEEP(10)"))
    m = r.wait(a, REQUEST_TIMEOUT + 10)
    assert m["status"] == "ok", m
    m = r.wait(b, REQUEST_TIMEOUT + 10)
    assert m["status"] == "timeout", m
    assert REQUEST_TIMEOUT * 1000 - 50 <= m["elapsed_ms"] <= (REQUEST_TIMEOUT + SLACK) * 1000, m
    assert_ticking(m)
    assert r.call("maxseq", hexarg("r"))["status"] == "ok"


def test_unix_socket_url(archive, mariadb):
    insert(archive, "u", simple_rows([5, 6]))
    url = f"mysql://{mariadb.user}:{mariadb.password}@/{archive.name}?socket={mariadb.socket}"
    rc, lines, err = run(url, "maxseq", "u")
    assert rc == 0 and lines[-1]["max_seq"] == 6, (lines, err)


def test_server_error_keeps_the_connection(repl):
    r = repl()
    m = r.call("exec", hexarg("SELECT * FROM no_such_table"))
    assert m["status"] == "query", m
    assert r.call("maxseq", hexarg("r"))["status"] == "ok"
    s = r.call("stats")
    assert s["connects"] == 1 and s["connected"] == 1, s


def test_cancelled_requests_never_call_back(archive):
    insert(archive, "c", simple_rows([1, 2, 5]))
    rc, lines, err = run(archive.url, "cancel", hexarg("c"))
    assert rc == 0, (lines, err)
    assert [x for x in lines if x["op"] == "cancel_running"][0]["busy"] >= 1, lines
    assert [x for x in lines if x["op"] == "maxseq"][0]["max_seq"] == 5, lines
    assert lines[-1]["status"] == "ok" and lines[-1]["unwanted"] == 0, lines


def test_free_ends_pending_requests_with_closed(archive):
    rc, lines, err = run(archive.url, "free", hexarg("f"))
    assert rc == 0, (lines, err)
    freed = [x for x in lines if "freed_busy" in x][0]
    assert freed["freed_busy"] >= 1 and freed["freed_queued"] >= 1, lines
    # every pending request called back once with "closed" (one was cancelled
    # from such a callback, one submitted from one), and nothing after the free
    assert freed["closed"] == 7, lines
    assert lines[-1]["status"] == "ok" and lines[-1]["unwanted"] == 0, lines


# ---------------------------------------------------------------- a database that goes away


def test_bad_url_is_refused(archive):
    rc, lines, err = run("not a url", "maxseq", "r")
    assert rc == 1 and lines[-1]["status"] == "bad_url"


def test_unreachable_database_fails_fast(archive):
    url = f"mysql://parley:parley-pw@127.0.0.1:{pl.free_port()}/x"
    rc, lines, err = run(url, "maxseq", "r")
    m = lines[-1]
    assert m["status"] == "down" and m["elapsed_ms"] < 1000, m


def wait_ok(r, room, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        m = r.call("maxseq", hexarg(room))
        assert_ticking(m)
        if m["status"] == "ok":
            assert m["max_seq"] == want
            return m
        assert m["elapsed_ms"] <= (REQUEST_TIMEOUT + SLACK) * 1000, m
        if time.monotonic() > deadline:
            raise pl.Failure(f"pool did not recover within {timeout}s: {m}")
        time.sleep(0.2)


def test_stopped_database_fails_requests_then_reconnects(repl, archive, mariadb):
    insert(archive, "s", simple_rows([1, 9]))
    r = repl()
    assert r.call("maxseq", hexarg("s"))["max_seq"] == 9
    mariadb.stop()
    try:
        for _ in range(4):
            t0 = time.monotonic()
            m = r.call("history", hexarg("s"), 100, 10)
            assert m["status"] in ("down", "lost", "timeout"), m
            assert time.monotonic() - t0 <= REQUEST_TIMEOUT + SLACK, m
            assert_ticking(m)
    finally:
        mariadb.start()
    wait_ok(r, "s", 9, 15)
    m = r.call("history", hexarg("s"), 100, 10)
    assert m["status"] == "ok" and [x["seq"] for x in m["rows"]] == [1, 9]


def stop_process(pid):
    """SIGSTOP, then wait until every thread really is stopped."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
        return True

    pl.wait_for(stopped, 5, 0.01, "mariadbd to stop")


def test_hung_database_fails_requests_in_time_then_recovers(repl, archive, mariadb):
    insert(archive, "h", simple_rows([4]))
    r = repl()
    assert r.call("maxseq", hexarg("h"))["max_seq"] == 4  # an idle connection now exists
    stop_process(mariadb.proc.pid)
    try:
        ids = [r.send("maxseq", hexarg("h")), r.send("history", hexarg("h"), 10, 10),
               r.send("maxseq", hexarg("h"))]
        for i in ids:
            m = r.wait(i, REQUEST_TIMEOUT + 10)
            assert m["status"] in ("down", "lost", "timeout"), m
            assert m["elapsed_ms"] <= (REQUEST_TIMEOUT + SLACK) * 1000, m
            assert_ticking(m)
    finally:
        os.kill(mariadb.proc.pid, signal.SIGCONT)
    wait_ok(r, "h", 4, 15)
