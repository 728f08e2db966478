"""
Fixtures for Parley's integration tests. Everything runs as child processes
on 127.0.0.1 with random free ports, under one session temp dir
(/tmp/pl-it-*, kept and printed when a test fails). Helpers live in the
package lib/ (pl.py, chatlib.py, archutil.py): `from lib import pl` works
from any test in this directory.

Run:  /usr/bin/python3 -m pytest tests/integration          (from the repo root)
      PARLEY_BUILD_DIR=build /usr/bin/python3 -m pytest ...  (binaries from build/)

Binaries: $PARLEY_BUILD_DIR/gateway/parley-gateway and
$PARLEY_BUILD_DIR/archiver/parley-archiver (PARLEY_BUILD_DIR defaults to the
repo root; a relative one is taken from the repo root). A missing binary,
redis-server or mariadbd is a failure, never a skip.

Fixtures
  redis            session Redis (pl.Redis): .host .port .url "redis://127.0.0.1:P/0"
                   .cli(*args) -> stdout text  .stop() .kill() .start() .restart()
                   Shared by all tests: use unique keys/rooms, or fresh_redis.
  fresh_redis      a separate Redis for this test only (same API); use it to
                   stop/flush/restart Redis without disturbing other tests.
  mariadb          session MariaDB (pl.MariaDB): .host .port .socket .url
                   "mysql://parley:parley-pw@127.0.0.1:P/parley_test"
                   .query(sql, db=None) -> [tuple of str|None]  .scalar(sql, db=None)
                   .query_as_parley(sql, db=None)  .fresh_database() -> name
                   .url_for(db)  .stop() .kill() .start()  (same datadir)
                   Root connects via the socket; user parley owns parley* databases.
                   A test that stops it must start() it again before it ends.
  fresh_database   an empty database for this test (dropped after):
                   .name .url .query(sql) .scalar(sql)
  gateway          factory: gateway(**opts) -> pl.Gateway, started and healthy.
                   Runs parley-gateway --listen 127.0.0.1:<free> --workers 2
                   --token_secret test-secret --redis_url <session redis> plus
                   --key value per opt (config key names; None drops a default,
                   True/False -> yes/no). PARLEY_* env is removed; output goes
                   to a log in the test's dir. Waits (10 s) for GET /healthz = 200.
                   gw.port gw.url "ws://127.0.0.1:P" gw.pid gw.log_text()
                   gw.stop(sig=SIGTERM, timeout=15) -> exit code (negative: signal)
                   gw.worker_pids() gw.http_get(path) gw.send_signal(sig) gw.running()
                   Extra: gateway(..., wait=False) skips the health wait;
                   gateway(..., env={...}) adds environment variables.
  archiver         factory: archiver("run"|"migrate"|"drain", **opts) -> pl.Archiver.
                   Defaults: --redis_url <session redis> --mysql_url <session
                   mariadb> --metrics_listen 127.0.0.1:<free> (a.port). "run"
                   waits (10 s) for its GET /healthz = 200 (wait=False: don't);
                   others are not waited for: a.wait(timeout) -> exit code.
                   archiver.ok("migrate", **opts) runs one to the end, asserts
                   exit 0 and returns its log text. a.http_get("/metrics"),
                   a.stop(), a.log_text() as for the gateway. Migrations come
                   from the source tree's deploy/sql unless migrations_dir=.
  token            pl.token: token(sub, secret="test-secret", exp_in=3600, alg="HS256",
                   **claims) -> HS256 JWT. Broken ones: exp_in=-60 (expired),
                   exp_in=None (no exp), secret="x" (wrong), alg="none"; or
                   pl.bad_tokens(sub) -> {name: token}; pl.jwt(header, payload, secret).
  workdir          a fresh directory for this test (str).

At teardown every gateway/archiver still running gets SIGTERM; one that
crashed (killed by SIGSEGV/SIGABRT/..., or a sanitizer report or crash in
its log, including a worker's) makes the test error. Set prog.expect_crash =
True when the test crashes it on purpose.

WebSocket clients (lib/pl.py)
  async def test_x(gateway):                 # async tests just work (run in asyncio.run)
      gw = gateway()
      async with pl.client(gw.url + "/ws") as c:
          await c.send_json({...}); m = await c.recv_json(timeout=2)
          m = await c.expect(lambda m: m.get("type") == "message")   # skips others
          m = await c.expect_type("message", room="r1"); await c.no_message(0.3)
          code, reason = await c.expect_close()
  Raw bytes: with pl.RawWS(gw.port) as r: status, hdrs = r.upgrade("/ws");
      r.send(b"..."); r.send_frame(pl.OP_TEXT, b"x", rsv=4, mask=False);
      f = r.recv_frame(); code, reason = r.recv_close(); r.wait_eof()
  pl.http_get(port, path) -> (status, headers, body); pl.free_port();
  pl.wait_for(pred, timeout, what=...).

The last line pytest prints is "integration: N passed, N failed" (errors
count as failed), which CI reads.
"""
import asyncio
import inspect
import os
import re
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import pl  # noqa: E402

ASYNC_TEST_TIMEOUT = 120

_session_dir = None
_outcomes = {}        # nodeid -> "passed" | "failed" | "skipped"
_collect_errors = []


def _session_tmp():
    global _session_dir
    if _session_dir is None:
        # Short and under /tmp: MariaDB's socket path must stay < 108 bytes.
        _session_dir = tempfile.mkdtemp(prefix="pl-it-", dir="/tmp")
    return _session_dir


def _test_dir(request):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:50]
    return tempfile.mkdtemp(prefix=name + "-", dir=_session_tmp())


@pytest.fixture
def workdir(request):
    return _test_dir(request)


# ---------------------------------------------------------------- Redis

@pytest.fixture(scope="session")
def redis():
    r = pl.Redis(os.path.join(_session_tmp(), "redis"))
    r.start()
    yield r
    r.kill()


@pytest.fixture
def fresh_redis(request):
    r = pl.Redis(os.path.join(_test_dir(request), "redis"))
    r.start()
    yield r
    r.kill()


# ---------------------------------------------------------------- MariaDB

@pytest.fixture(scope="session")
def mariadb():
    m = pl.MariaDB(os.path.join(_session_tmp(), "mariadb"))
    m.start()
    yield m
    m.stop()


class FreshDatabase:
    def __init__(self, mariadb):
        self.mariadb = mariadb
        self.name = mariadb.fresh_database()
        self.url = mariadb.url_for(self.name)

    def query(self, sql):
        return self.mariadb.query(sql, self.name)

    def scalar(self, sql):
        return self.mariadb.scalar(sql, self.name)


@pytest.fixture
def fresh_database(mariadb):
    db = FreshDatabase(mariadb)
    yield db
    if not mariadb.running():
        mariadb.start()
    mariadb.drop_database(db.name)


# ---------------------------------------------------------------- our programs

def _finish(programs):
    """Stops what is still running; returns crash/hang reports."""
    problems = []
    for p in programs:
        if p.running():
            try:
                p.stop(signal.SIGTERM, timeout=20)
            except pl.Failure as e:
                problems.append(str(e))
        else:
            p.wait(1)
        report = p.crash_report()
        if report:
            problems.append(report)
    return problems


@pytest.fixture
def gateway(request):
    started = []
    bin_ = pl.binary("gateway")

    def start(wait=True, env=None, **opts):
        port = pl.free_port()
        defaults = {"listen": f"127.0.0.1:{port}", "workers": 2, "token_secret": "test-secret"}
        if "redis_url" not in opts:
            defaults["redis_url"] = request.getfixturevalue("redis").url
        if "listen" in opts and opts["listen"]:
            port = int(str(opts["listen"]).rsplit(":", 1)[1])
        defaults.update(opts)
        d = _test_dir(request)
        argv = [bin_] + pl.opt_args(defaults)
        g = pl.Gateway(argv, os.path.join(d, "gateway.log"), port, env=pl.clean_env(env))
        started.append(g)
        if wait:
            g.wait_healthy(10)
        return g

    yield start
    problems = _finish(started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


class _ArchiverFactory:
    def __init__(self, request):
        self.request = request
        self.started = []
        self.bin = pl.binary("archiver")

    def __call__(self, *args, wait=None, env=None, **opts):
        defaults = {"metrics_listen": f"127.0.0.1:{pl.free_port()}"}
        if "redis_url" not in opts:
            defaults["redis_url"] = self.request.getfixturevalue("redis").url
        if "mysql_url" not in opts:
            defaults["mysql_url"] = self.request.getfixturevalue("mariadb").url
        defaults.update(opts)
        listen = defaults.get("metrics_listen")
        port = int(str(listen).rsplit(":", 1)[1]) if listen else None
        d = _test_dir(self.request)
        argv = [self.bin] + [str(a) for a in args] + pl.opt_args(defaults)
        a = pl.Archiver(argv, os.path.join(d, "archiver.log"), port, env=pl.clean_env(env))
        self.started.append(a)
        if wait is None:
            wait = bool(args) and args[0] == "run" and port is not None
        if wait:
            a.wait_healthy(10)
        return a

    def ok(self, *args, timeout=60, **opts):
        a = self(*args, **opts)
        rc = a.wait(timeout)
        assert rc == 0, f"parley-archiver {' '.join(map(str, args))} exited {rc}:\n{pl.tail(a.log)}"
        return a.log_text()


@pytest.fixture
def archiver(request):
    f = _ArchiverFactory(request)
    yield f
    problems = _finish(f.started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def token():
    return pl.token


# ---------------------------------------------------------------- async tests

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Runs `async def test_*` in a fresh event loop (no pytest-asyncio needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    if pyfuncitem.config.pluginmanager.hasplugin("asyncio"):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {n: pyfuncitem.funcargs[n] for n in names}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


# ---------------------------------------------------------------- the summary line CI reads

def pytest_runtest_logreport(report):
    prev = _outcomes.get(report.nodeid)
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif prev == "failed":
        return
    elif report.skipped:
        _outcomes[report.nodeid] = "skipped"
    elif report.passed and report.when == "call":
        _outcomes[report.nodeid] = "passed"


def pytest_collectreport(report):
    if report.failed:
        _collect_errors.append(report.nodeid)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # The outermost wrapper: its second half runs after the terminal reporter
    # has printed its own stats: ours is the very last line.
    yield
    vals = list(_outcomes.values())
    passed = vals.count("passed")
    failed = vals.count("failed") + len(_collect_errors)
    skipped = vals.count("skipped")
    if _session_dir:
        if failed:
            print(f"\nintegration: logs kept in {_session_dir}")
        else:
            pl.rmtree(_session_dir)
    line = f"integration: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line)
    else:
        print(line)
