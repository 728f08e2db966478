"""
Helpers for Parley's integration tests: the servers a test needs (Redis,
MariaDB, parley-gateway, parley-archiver) as child processes on loopback
ports in a temp dir, HS256 tokens, an asyncio WebSocket client and a raw
socket client for malformed input. conftest.py turns these into fixtures;
its docstring is the API summary. Nothing here needs more than Debian's
python3, python3-pytest and python3-websockets (10.4).
"""
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import websockets
import websockets.exceptions

# this file is tests/integration/lib/pl.py
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))

# Everything that marks a crash or a sanitizer finding in a program's log.
CRASH_RE = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |"
    r"SUMMARY: UndefinedBehaviorSanitizer|"
    r"\bSIG(SEGV|ABRT|BUS|ILL|FPE)\b|signal[= ](11|6|7|4|8)\b"
)
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


class Failure(AssertionError):
    """A helper could not do what the test asked (server did not start...)."""


# ---------------------------------------------------------------- basics

def build_dir():
    """$PARLEY_BUILD_DIR (relative paths are taken from the repo root), else the repo root."""
    d = os.environ.get("PARLEY_BUILD_DIR") or REPO
    return d if os.path.isabs(d) else os.path.join(REPO, d)


def binary(name):
    """Path of a built program: 'gateway' or 'archiver'. Fails if it is not built."""
    path = os.path.join(build_dir(), name, "parley-" + name)
    if not os.access(path, os.X_OK):
        raise Failure(f"{path} not found: build first (./scripts/test.sh, or make in "
                      f"$PARLEY_BUILD_DIR={build_dir()})")
    return path


def need_program(prog, package):
    """Absolute path of a system program, or a failure naming the Debian package."""
    for d in (os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin").split(":"):
        p = os.path.join(d, prog)
        if d and os.access(p, os.X_OK):
            return p
    raise Failure(f"{prog} not found: install the Debian package {package} "
                  f"(./scripts/deps.sh does it)")


_used_ports = set()


def free_port():
    """A loopback TCP port nobody listens on now (and not handed out before in this run)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise Failure("no free port")


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Calls pred() until it returns something truthy (returned) or timeout (Failure)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def children_of(pid):
    """PIDs whose parent is pid (from /proc, no pgrep needed)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]


def clean_env(extra=None):
    """os.environ without PARLEY_* (so no stray config leaks in), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(extra or {})
    return env


def opt_args(opts):
    """{'drain_timeout': '2s', 'workers': 2} -> ['--drain_timeout', '2s', '--workers', '2'].
    None drops a key; True/False become yes/no."""
    args = []
    for k, v in opts.items():
        if v is None:
            continue
        if v is True or v is False:
            v = "yes" if v else "no"
        args += ["--" + k, str(v)]
    return args


# ---------------------------------------------------------------- HTTP

def http_get(port, path="/", headers=None, host="127.0.0.1", timeout=2.0):
    """One GET over a fresh connection. Returns (status, {lowercase header: value}, body bytes)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        req += f"{k}: {v}\r\n"
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall((req + "\r\n").encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    return parse_http_response(data)


def parse_http_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0] if lines else "")
    if not m:
        raise Failure(f"not an HTTP response: {data[:200]!r}")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(m.group(1)), hdrs, body


# ---------------------------------------------------------------- Redis

class _ChildServer:
    """Stop/kill/restart for a server child kept in self.proc (start() is the
    subclass's); stop_timeout is how long a clean shutdown may take."""
    stop_timeout = 10

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM (clean shutdown) and wait; down until start()."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout or self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self

    def kill(self):
        """SIGKILL: a crash rather than a shutdown."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        return self

    def restart(self):
        return self.stop().start()


class Redis(_ChildServer):
    """A redis-server child on 127.0.0.1:port with its files in dir.

    .host .port .url ("redis://127.0.0.1:P/0"), .cli(*args) -> stdout text,
    .stop() .kill() .start() .restart() .running(). Nothing is persisted
    unless appendonly=True. bind lists the addresses to listen on (e.g.
    ("127.0.0.1", "::1")); password sets requirepass (cli() then uses it).
    """

    def __init__(self, dir, port=None, appendonly=False, bind=("127.0.0.1",), password=None):
        self.bin = need_program("redis-server", "redis-server")
        self.cli_bin = need_program("redis-cli", "redis-server")
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.url = f"redis://{self.host}:{self.port}/0"
        self.appendonly = appendonly
        self.bind = list(bind)
        self.password = password
        self.log = os.path.join(dir, "redis.log")
        self.proc = None

    def start(self, timeout=10):
        if self.running():
            return self
        argv = [self.bin, "--port", str(self.port), "--bind", *self.bind,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--dir", self.dir, "--logfile", self.log, "--daemonize", "no"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, env=clean_env())
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"redis-server exited with {self.proc.returncode}:\n{tail(self.log)}")
            r = subprocess.run(self._cli_argv() + ["PING"], capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise Failure(f"redis-server on port {self.port} did not answer PING "
                              f"within {timeout}s:\n{tail(self.log)}")
            time.sleep(0.05)

    def _cli_argv(self):
        argv = [self.cli_bin, "-h", self.host, "-p", str(self.port)]
        if self.password is not None:
            argv += ["-a", self.password, "--no-auth-warning"]
        return argv

    def cli(self, *args, check=True):
        """redis-cli -p PORT args...; returns stdout without the last newline."""
        r = subprocess.run(self._cli_argv() + [str(a) for a in args],
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise Failure(f"redis-cli {' '.join(map(str, args))} failed ({r.returncode}): "
                          f"{r.stdout}{r.stderr}")
        return r.stdout.rstrip("\n")



# ---------------------------------------------------------------- MariaDB

class MariaDB(_ChildServer):
    """A mariadbd child on 127.0.0.1:port, datadir under dir, root via its socket.

    .host .port .socket .user .password .database ("parley_test") .url
    ("mysql://parley:parley-pw@127.0.0.1:P/parley_test"), .query(sql, db=None)
    -> list of row tuples (strings; NULL as None), .scalar(sql),
    .fresh_database() -> name, .url_for(db), .stop() .kill() .start().
    """
    stop_timeout = 30  # InnoDB shutdown

    user = "parley"
    password = "parley-pw"
    database = "parley_test"
    _seq = itertools.count(1)

    def __init__(self, dir, port=None):
        self.bin = need_program("mariadbd", "mariadb-server")
        self.install_bin = need_program("mariadb-install-db", "mariadb-server")
        self.client_bin = need_program("mariadb", "mariadb-client")
        self.dir = dir
        self.datadir = os.path.join(dir, "data")
        self.socket = os.path.join(dir, "sock")
        self.log = os.path.join(dir, "mariadb.log")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.url = self.url_for(self.database)
        self.proc = None
        os.makedirs(dir, exist_ok=True)

    def url_for(self, db):
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def _install(self):
        r = subprocess.run([self.install_bin, "--no-defaults", "--datadir=" + self.datadir,
                            "--user=root", "--auth-root-authentication-method=normal",
                            "--skip-test-db", "--skip-name-resolve",
                            "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"],
                           capture_output=True, text=True, env=clean_env())
        if r.returncode != 0:
            raise Failure(f"mariadb-install-db failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    def start(self, timeout=30):
        if self.running():
            return self
        first = not os.path.isdir(os.path.join(self.datadir, "mysql"))
        if first:
            self._install()
        argv = [self.bin, "--no-defaults", "--datadir=" + self.datadir, "--socket=" + self.socket,
                "--port=" + str(self.port), "--bind-address=127.0.0.1", "--user=root",
                "--pid-file=" + os.path.join(self.dir, "mariadb.pid"), "--log-error=" + self.log,
                "--skip-log-bin", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=8M", "--innodb-flush-log-at-trx-commit=2",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=500"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, env=clean_env())
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"mariadbd exited with {self.proc.returncode}:\n{tail(self.log)}")
            if os.path.exists(self.socket) and self._root(["-e", "SELECT 1"]).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise Failure(f"mariadbd did not accept connections within {timeout}s:\n{tail(self.log)}")
            time.sleep(0.05)
        if first:
            pw = self.password
            self.query(
                f"CREATE DATABASE IF NOT EXISTS {self.database} CHARACTER SET utf8mb4;"
                f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
                f"CREATE USER '{self.user}'@'localhost' IDENTIFIED BY '{pw}';"
                f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{pw}';"
                f"GRANT ALL ON `parley%`.* TO '{self.user}'@'127.0.0.1';"
                f"GRANT ALL ON `parley%`.* TO '{self.user}'@'localhost';"
                f"GRANT ALL ON `parley%`.* TO '{self.user}'@'%';"
            )
        return self

    def _root(self, args, db=None):
        argv = [self.client_bin, "--no-defaults", "-S", self.socket, "-uroot", "-N", "-B"] + args
        if db:
            argv.append(db)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env())

    def query(self, sql, db=None):
        """Runs sql (one or more ;-separated statements) as root over the socket.
        Returns the rows of the output as tuples of strings (NULL -> None)."""
        r = self._root(["-e", sql], db)
        if r.returncode != 0:
            raise Failure(f"query failed: {sql}\n{r.stderr.strip()}")
        rows = []
        for line in r.stdout.splitlines():
            rows.append(tuple(None if c == "NULL" else c for c in line.split("\t")))
        return rows

    def scalar(self, sql, db=None):
        """The first column of the first row (None if no row)."""
        rows = self.query(sql, db)
        return rows[0][0] if rows else None

    def query_as_parley(self, sql, db=None):
        """Like query but as the parley user over TCP (checks the grants and the port)."""
        argv = [self.client_bin, "--no-defaults", "-h", self.host, "-P", str(self.port),
                "-u", self.user, "-p" + self.password, "-N", "-B", "-e", sql, db or self.database]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env())
        if r.returncode != 0:
            raise Failure(f"query as {self.user} failed: {sql}\n{r.stderr.strip()}")
        return [tuple(line.split("\t")) for line in r.stdout.splitlines()]

    def fresh_database(self):
        """Creates an empty database parley_t<N> the parley user owns; returns its name."""
        name = f"parley_t{os.getpid()}_{next(self._seq)}"
        self.query(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return name

    def drop_database(self, name):
        if self.running():
            self.query(f"DROP DATABASE IF EXISTS {name}")



# ---------------------------------------------------------------- our programs

class Program:
    """One parley-gateway or parley-archiver child (in its own process group).

    .pid .argv .log (path) .log_text() .running() .wait(timeout) -> exit code,
    .stop(sig=SIGTERM, timeout=15) -> exit code (negative = killed by that
    signal), .send_signal(sig), .worker_pids(), .crash_report() -> text or None.
    Set .expect_crash = True when a test kills it on purpose with a crash signal.
    """

    def __init__(self, name, argv, log, env=None):
        self.name = name
        self.argv = argv
        self.log = log
        self.expect_crash = False
        self.returncode = None
        self._logf = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = self.proc.pid

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def running(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.pid, sig)

    def worker_pids(self):
        return children_of(self.pid) if self.running() else []

    def wait(self, timeout=30):
        """Waits for exit; returns the exit code (Failure if still running at timeout)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name} (pid {self.pid}) still running after {timeout}s:\n"
                          f"{tail(self.log)}")
        self._reap_group()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits; returns the exit code. SIGKILLs the group and
        fails if it has not exited within timeout."""
        if self.running():
            os.kill(self.pid, sig)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.returncode = self.proc.wait()
            raise Failure(f"{self.name} (pid {self.pid}) did not exit within {timeout}s of "
                          f"{signal.Signals(sig).name}:\n{tail(self.log)}")
        self._reap_group()
        return self.returncode

    def _kill_group(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _reap_group(self):
        # Workers left behind by a dead master would hold the port: end them.
        self._kill_group()
        self._logf.close()

    def crash_report(self):
        """Why this run counts as a crash (signal or sanitizer/crash text in
        the log), or None."""
        if self.expect_crash:
            return None
        rc = self.proc.returncode
        if rc is not None and rc < 0 and -rc in CRASH_SIGNALS:
            return f"{self.name} killed by {signal.Signals(-rc).name}:\n{tail(self.log, 60)}"
        try:
            text = self.log_text()
        except OSError:
            return None
        m = CRASH_RE.search(text)
        if m:
            start = max(0, text.rfind("\n", 0, max(0, m.start() - 2000)))
            return f"{self.name} log shows a crash ({m.group(0)!r}):\n{text[start:start + 6000]}"
        return None


class _HTTPProgram(Program):
    """A Program with an HTTP port that serves GET /healthz."""

    def http_get(self, path, headers=None, timeout=2.0):
        return http_get(self.port, path, headers, timeout=timeout)

    def healthy(self):
        try:
            return self.http_get("/healthz", timeout=1.0)[0] == 200
        except (OSError, Failure):
            return False

    def wait_healthy(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.running():
                self.wait(1)
                raise Failure(f"{self.name} exited with {self.returncode} before /healthz "
                              f"answered 200:\n$ {' '.join(self.argv)}\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise Failure(f"{self.name}: GET /healthz on port {self.port} did not return 200 "
                              f"within {timeout}s:\n$ {' '.join(self.argv)}\n{tail(self.log)}")
            time.sleep(0.05)
        return self


class Gateway(_HTTPProgram):
    """A parley-gateway: also .port .url ("ws://127.0.0.1:P"), .http_get(path)."""

    def __init__(self, argv, log, port, env=None):
        super().__init__("parley-gateway", argv, log, env)
        self.port = port
        self.host = "127.0.0.1"
        self.url = f"ws://127.0.0.1:{port}"


class Archiver(_HTTPProgram):
    """A parley-archiver: also .port (its metrics_listen port, None if off),
    .http_get(path) ("/metrics", "/healthz")."""

    def __init__(self, argv, log, port, env=None):
        super().__init__("parley-archiver", argv, log, env)
        self.port = port
        self.host = "127.0.0.1"


# ---------------------------------------------------------------- tokens

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt(header, payload, secret):
    """Signs any header/payload with HS256 (or leaves the signature empty if
    header alg is 'none'). Nothing is checked: build broken tokens with it."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    if header.get("alg") == "none":
        return f"{h}.{p}."
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def token(sub, secret="test-secret", exp_in=3600, alg="HS256", **claims):
    """An HS256 JWT for user sub: iat now, exp now+exp_in (None: no exp;
    negative: already expired), plus claims. alg="none" makes an unsigned one."""
    now = int(time.time())
    payload = {"sub": sub, "iat": now}
    if exp_in is not None:
        payload["exp"] = now + exp_in
    payload.update(claims)
    return jwt({"alg": alg, "typ": "JWT"}, payload, secret)


def bad_tokens(sub="mallory", secret="test-secret"):
    """Tokens the gateway must refuse, by name."""
    good = token(sub, secret)
    h, p, s = good.split(".")
    flipped = ("A" if s[0] != "A" else "B") + s[1:]
    return {
        "alg_none": token(sub, secret, alg="none"),
        "wrong_secret": token(sub, "not-the-secret"),
        "expired": token(sub, secret, exp_in=-60),
        "no_exp": token(sub, secret, exp_in=None),
        "no_sub": jwt({"alg": "HS256", "typ": "JWT"}, {"exp": int(time.time()) + 3600}, secret),
        "tampered_payload": f"{h}.{b64url(json.dumps({'sub': 'admin', 'exp': int(time.time()) + 3600}).encode())}.{s}",
        "bad_signature": f"{h}.{p}.{flipped}",
        "garbage": "not-a-jwt",
        "empty": "",
    }


# ---------------------------------------------------------------- asyncio WebSocket client

class Client:
    """A websockets 10.4 connection with JSON helpers. Every receive has a
    timeout; running out fails the test (AssertionError) with what was seen."""

    def __init__(self, ws):
        self.ws = ws
        self.seen = []  # messages expect() skipped over

    async def send(self, data):
        await self.ws.send(data)

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

    async def recv(self, timeout=2.0):
        """Next message (str or bytes). ConnectionClosed propagates."""
        try:
            return await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no message within {timeout}s (skipped so far: {self.seen[-5:]})")

    async def recv_json(self, timeout=2.0):
        return json.loads(await self.recv(timeout))

    async def expect(self, pred, timeout=2.0):
        """Receives JSON messages until pred(msg) is true and returns that
        message; the others are kept in .seen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; got: {self.seen[-10:]}")
            try:
                msg = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no matching message within {timeout}s; got: {self.seen[-10:]}")
            m = json.loads(msg)
            if pred(m):
                return m
            self.seen.append(m)

    async def expect_type(self, type_, timeout=2.0, **fields):
        """expect() a message whose "type" is type_ and whose fields match."""
        return await self.expect(
            lambda m: isinstance(m, dict) and m.get("type") == type_
            and all(m.get(k) == v for k, v in fields.items()), timeout)

    async def no_message(self, timeout=0.3):
        """Asserts nothing arrives within timeout."""
        try:
            msg = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message: {msg!r}")

    async def expect_close(self, timeout=2.0):
        """Reads until the server closes; returns (code, reason). 1006 = no close frame."""
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise asyncio.TimeoutError
                self.seen.append(await asyncio.wait_for(self.ws.recv(), left))
        except asyncio.TimeoutError:
            raise AssertionError(f"connection still open after {timeout}s; got: {self.seen[-10:]}")
        except websockets.exceptions.ConnectionClosed as e:
            return e.code, e.reason

    async def close(self, code=1000, reason=""):
        await self.ws.close(code, reason)

    @property
    def close_code(self):
        return self.ws.close_code


@contextlib.asynccontextmanager
async def client(url, origin=None, headers=None, timeout=5.0, **kw):
    """async with pl.client(gw.url + "/ws") as c: ...  (no compression, no
    client pings, no size limit; extra kw go to websockets.connect)."""
    kw.setdefault("compression", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    ws = await asyncio.wait_for(
        websockets.connect(url, origin=origin, extra_headers=headers, open_timeout=timeout, **kw),
        timeout)
    c = Client(ws)
    try:
        yield c
    finally:
        await ws.close()


async def connect(url, **kw):
    """A Client without the context manager (call await c.close())."""
    kw.setdefault("compression", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return Client(await websockets.connect(url, **kw))


def run(coro, timeout=60):
    """Runs a coroutine from a sync test, with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- raw sockets

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None, length=None):
    """One WebSocket frame. rsv is the 3-bit RSV field; length overrides the
    encoded payload length (for lying frames); mask=False for an unmasked one."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


def decode_close(payload):
    """Close frame payload -> (code, reason); (1005, "") when empty."""
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def __repr__(self):
        return f"Frame(op={self.opcode:#x}, fin={self.fin}, len={len(self.payload)}, {self.payload[:60]!r})"


class RawWS:
    """A blocking TCP socket for hand-made input: raw bytes, handshakes and
    frames, malformed or not.

        r = pl.RawWS(gw.port)
        status, headers = r.upgrade("/ws")       # or r.send(b"GET / HTTP/1.1\\r\\n...")
        r.send_frame(pl.OP_TEXT, b"hi", rsv=4)
        assert r.recv_close() == (1002, ...)
    """

    def __init__(self, port, host="127.0.0.1", timeout=3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.host, self.port, self.timeout = host, port, timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(encode_frame(opcode, payload, **kw))

    def send_close(self, code=1000, reason=""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed the connection")
        self.buf += chunk

    def _read(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"wanted {n} bytes, have {len(self.buf)}")
            self._fill(left)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def upgrade(self, path="/ws", headers=None, key=None, version="13", origin=None, timeout=None):
        """Sends a (by default valid) upgrade request and reads the response
        head. headers: dict that adds or, with value None, removes a header.
        Returns (status, {lowercase header: value})."""
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        h = {"Host": f"{self.host}:{self.port}", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": self.key, "Sec-WebSocket-Version": version}
        if origin:
            h["Origin"] = origin
        for k, v in (headers or {}).items():
            h[k] = v
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
        self.send(req + "\r\n")
        return self.read_response_head(timeout)

    def read_response_head(self, timeout=None):
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"no HTTP response head within {timeout}s: {self.buf[:200]!r}")
            self._fill(left)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, hdrs, _ = parse_http_response(head + b"\r\n\r\n")
        return status, hdrs

    def recv_frame(self, timeout=None):
        """Next frame from the server (Frame), EOFError if the peer closed,
        socket.timeout if nothing came."""
        timeout = timeout or self.timeout
        b0, b1 = self._read(2, timeout)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, timeout))[0]
        key = self._read(4, timeout) if b1 & 0x80 else None
        payload = self._read(n, timeout) if n else b""
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, bool(b1 & 0x80), payload)

    def recv_close(self, timeout=None):
        """Skips data/ping frames until a close frame; returns (code, reason).
        (1006, "") if the connection ended without one."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        self.skipped = []
        try:
            while True:
                f = self.recv_frame(max(0.01, deadline - time.monotonic()))
                if f.opcode == OP_CLOSE:
                    return decode_close(f.payload)
                self.skipped.append(f)
        except (EOFError, ConnectionResetError):
            return 1006, ""

    def wait_eof(self, timeout=None):
        """True once the server has closed the TCP connection (data is discarded)."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(max(0.01, deadline - time.monotonic()))
                self.buf = b""
        except (EOFError, ConnectionResetError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)
