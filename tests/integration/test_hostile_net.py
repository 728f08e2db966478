"""
Hostile clients and process faults at the transport (issue 8): a worker's
connection cap and its file-descriptor reserve, the per-address cap across
all workers of a node, the client address behind a trusted proxy, a
worker that cannot run with its config, and the respawn gap.

Source addresses: 127.0.0.0/8 is all loopback on Linux, so binding the
client socket to 127.0.0.N gives each test "client" its own address.
"""
import asyncio
import os
import re
import signal
import socket
import subprocess
import time

from lib import pl
from lib.chatlib import login, metric, uniq

ECHO = {"echo_path": "/echo"}
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def connect(port, src=None, timeout=3.0):
    s = socket.socket()
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_head(s, timeout=3.0):
    """Reads up to the end of an HTTP response head (or EOF); returns (status, bytes)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return (int(m.group(1)) if m else None), data


def request(port, path="/healthz", src=None, headers=None, timeout=3.0):
    """One request on a fresh socket; returns (status, the socket still open)."""
    s = connect(port, src, timeout)
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    if path == "/echo":
        req += (f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n")
    for k, v in (headers or {}).items():
        req += f"{k}: {v}\r\n"
    s.sendall((req + "\r\n").encode())
    status, _ = read_head(s, timeout)
    return status, s


def status_of(port, path="/healthz", src=None, headers=None, timeout=3.0):
    status, s = request(port, path, src, headers, timeout)
    s.close()
    return status


def hold(port, src=None, headers=None):
    """An open WebSocket (on /echo): accepted and counted by some worker."""
    status, s = request(port, "/echo", src, headers)
    assert status == 101, status
    return s


def per_worker(gw, name, **labels):
    _, _, body = gw.http_get("/metrics")
    out = {}
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        m = re.match(re.escape(name) + r"\{" + re.escape(want) + r',worker="(\d+)"\} (\d+)', line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def refusals(gw, limit, n=1):
    """The refusal lines for limit, once there are at least n (the client
    may read its 429 before the worker has written the line)."""
    def lines():
        out = [line for line in gw.log_text().splitlines()
               if "connection refused: limit reached" in line and f"limit={limit}" in line]
        return out if len(out) >= n else None
    return pl.wait_for(lines, 5, what=f"{n} refusal lines for {limit}")


# ---------------------------------------------------------------- max_connections

def test_max_connections_answers_503_and_keeps_serving(gateway):
    gw = gateway(workers=1, max_connections=6, **ECHO)
    held = [hold(gw.port) for _ in range(6)]
    # the worker is full: the next client gets a 503 at once, not a hang
    t0 = time.monotonic()
    status, s = request(gw.port)
    assert status == 503
    assert time.monotonic() - t0 < 1.0
    s.close()
    assert status_of(gw.port, "/echo") == 503
    # those already in are still served
    for h in held[:3]:
        h.sendall(pl.encode_frame(pl.OP_TEXT, b"still here"))
        h.settimeout(3)
        assert b"still here" in h.recv(100)
    # one leaves: the next is let in again
    held.pop().close()
    pl.wait_for(lambda: status_of(gw.port) == 200, 5, what="a free slot")
    held.pop().close()
    time.sleep(0.2)
    assert metric(gw, "parley_limit_rejections_total", limit="max_connections") == 2
    assert len(refusals(gw, "max_connections", 2)) == 2
    for h in held:
        h.close()


def test_max_connections_default_leaves_an_fd_reserve(gateway):
    gw = gateway(workers=1)
    m = re.search(r"max_connections=(\d+) fd_reserve=(\d+)", gw.log_text())
    assert m, gw.log_text()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # the master raises the soft limit to the hard one, then keeps a reserve
    assert int(m.group(1)) == hard - int(m.group(2))
    assert int(m.group(2)) >= 32 + 2 * 2
    # the parsed default shows in the worker too
    assert f"max_connections={hard - int(m.group(2))}" in gw.log_text().split("master started")[1]


def test_max_connections_above_the_fd_limit_is_lowered(gateway):
    gw = gateway(workers=1, max_connections=10000000)
    assert "max_connections is above what the open-file limit allows: lowered" in gw.log_text()


async def test_fd_reserve_lets_redis_reconnect_when_clients_fill_the_worker(
        fresh_redis, workdir):
    """64 descriptors in all: the default cap leaves the worker's reserve
    (32 + 2 per MySQL connection), so 40 idle clients cannot starve it;
    Redis restarts, the worker reconnects, the chat client is served."""
    port = pl.free_port()
    argv = ["prlimit", "--nofile=64:64", pl.binary("gateway"),
            "--listen", f"127.0.0.1:{port}", "--workers", "1", "--token_secret", "test-secret",
            "--redis_url", fresh_redis.url, "--echo_path", "/echo"]
    gw = pl.Gateway(argv, os.path.join(workdir, "gateway.log"), port, env=pl.clean_env())
    try:
        gw.wait_healthy(10)
        assert "max_connections=28 fd_reserve=36" in gw.log_text(), gw.log_text()
        alice = await login(gw, "alice")
        room = uniq()
        await alice.ok("join", room=room)
        held, refused = [], 0
        for _ in range(40):
            status, s = request(gw.port, "/echo")
            if status == 101:
                held.append(s)
            else:
                assert status == 503, status
                refused += 1
                s.close()
        assert len(held) == 27 and refused == 13
        fresh_redis.restart()
        deadline = time.monotonic() + 15
        while True:  # unavailable until the worker has reconnected
            r = await alice.cmd("send", room=room, text="after the restart")
            if r.get("ok"):
                break
            assert r.get("error") == "unavailable" and time.monotonic() < deadline, r
            await asyncio.sleep(0.2)
        assert "Too many open files" not in gw.log_text()
        for s in held:
            s.close()
        await alice.close()
        pl.wait_for(lambda: status_of(gw.port) == 200, 5, what="a free slot")
        assert metric(gw, "parley_limit_rejections_total", limit="max_connections") == 13
    finally:
        gw.stop()
        report = gw.crash_report()
        assert report is None, report


# ---------------------------------------------------------------- per address

def test_per_ip_limit_is_node_wide_and_per_address(gateway):
    gw = gateway(workers=2, max_connections_per_ip=3, **ECHO)
    held = [hold(gw.port, src="127.0.0.2") for _ in range(3)]
    # 16 more from the same address: the kernel spreads them over both
    # workers, and each of them refuses (the count is the node's)
    for _ in range(16):
        assert status_of(gw.port, "/echo", src="127.0.0.2") == 429
    by_worker = per_worker(gw, "parley_limit_rejections_total", limit="max_connections_per_ip")
    assert sum(by_worker.values()) == 16
    assert all(n > 0 for n in by_worker.values()) and len(by_worker) == 2, by_worker
    # another address is not affected
    others = [hold(gw.port, src="127.0.0.3") for _ in range(3)]
    assert status_of(gw.port, src="127.0.0.3") == 429
    # one leaves: that address may connect once more
    held.pop().close()
    pl.wait_for(lambda: status_of(gw.port, "/healthz", src="127.0.0.2") == 200, 5,
                what="a free per-address slot")
    assert refusals(gw, "max_connections_per_ip")
    assert "peer=127.0.0.2" in refusals(gw, "max_connections_per_ip")[0]
    for s in held + others:
        s.close()


def test_per_ip_counts_of_a_killed_worker_are_dropped(gateway):
    gw = gateway(workers=1, max_connections_per_ip=2, **ECHO)
    held = [hold(gw.port, src="127.0.0.4") for _ in range(2)]
    assert status_of(gw.port, src="127.0.0.4") == 429
    pid = gw.worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    pl.wait_for(lambda: gw.worker_pids() and pid not in gw.worker_pids(), 10, what="respawn")
    gw.wait_healthy(10)
    for s in held:
        s.close()
    # the dead worker's two connections no longer count
    assert status_of(gw.port, "/echo", src="127.0.0.4") == 101


# ---------------------------------------------------------------- trusted proxies

def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(gateway):
    gw = gateway(workers=2, max_connections_per_ip=1, trusted_proxies="127.0.0.5/32, ::1",
                 **ECHO)
    xff = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}  # the left entry is the client's own
    # through the trusted proxy: counted under the forwarded client address
    a = hold(gw.port, src="127.0.0.5", headers=xff)
    assert status_of(gw.port, "/echo", src="127.0.0.5", headers=xff) == 429
    line = refusals(gw, "max_connections_per_ip")[-1]
    assert "peer=198.51.100.7" in line and "127.0.0.5" not in line, line
    # the proxy itself is not limited: other clients behind it get in
    b = hold(gw.port, src="127.0.0.5", headers={"X-Forwarded-For": "198.51.100.8"})
    c = hold(gw.port, src="127.0.0.5", headers={"X-Real-IP": "198.51.100.9"})
    # a client that is not a trusted proxy cannot pick its address
    d = hold(gw.port, src="127.0.0.6", headers={"X-Forwarded-For": "198.51.100.10"})
    assert status_of(gw.port, "/echo", src="127.0.0.6",
                     headers={"X-Forwarded-For": "198.51.100.11"}) == 429
    line = refusals(gw, "max_connections_per_ip", 2)[-1]
    assert "peer=127.0.0.6:" in line and "198.51.100" not in line, line
    assert metric(gw, "parley_limit_rejections_total", limit="max_connections_per_ip") == 2
    for s in (a, b, c, d):
        s.close()


def test_forwarded_client_address_shows_in_logs(gateway):
    gw = gateway(workers=1, trusted_proxies="127.0.0.5", log_level="debug", **ECHO)
    s = hold(gw.port, src="127.0.0.5", headers={"X-Forwarded-For": "203.0.113.77"})
    s.close()
    pl.wait_for(lambda: "client address from proxy headers" in gw.log_text(), 5, what="log")
    lines = [l for l in gw.log_text().splitlines() if "peer=203.0.113.77" in l]
    assert any("websocket open" in l for l in lines), lines
    assert any("proxy=127.0.0.5:" in l for l in lines), lines


def test_trusted_proxies_is_checked_at_load(workdir):
    r = subprocess.run([pl.binary("gateway"), "--check-config", "--trusted_proxies",
                        "10.0.0.1/8"], capture_output=True, text=True, env=pl.clean_env())
    assert r.returncode == 2 and "trusted_proxies" in r.stderr and "10.0.0.1/8" in r.stderr


# ---------------------------------------------------------------- process faults

def _config_fault():
    """A config that passes --check-config but that a worker cannot run
    with. The first candidate the checker accepts is used."""
    candidates = [
        {"redis_url": "redis://127.0.0.1:0/0"},  # port 0: the store refuses it at worker start
        {"token_secret": None, "token_secret_file": "/nonexistent/parley-secret"},
    ]
    for opts in candidates:
        argv = [pl.binary("gateway"), "--check-config"] + pl.opt_args(opts)
        if subprocess.run(argv, capture_output=True, env=pl.clean_env()).returncode == 0:
            return opts
    raise AssertionError("no candidate config passes --check-config")


def test_worker_config_fault_stops_the_gateway_with_2(gateway):
    gw = gateway(wait=False, workers=2, **_config_fault())
    rc = gw.wait(15)  # before: respawned forever, the master never exits
    assert rc == 2, rc
    log = gw.log_text()
    assert log.count("worker cannot run with this configuration") == 1, log
    assert log.count("worker started\tslot=") + log.count('worker started" slot=') <= 2, log
    assert "respawn_in_ms" not in log


def test_no_connection_waits_on_a_slot_in_respawn_backoff(gateway):
    gw = gateway(workers=2)
    # quick deaths of slot 0's worker: the third waits 4 s to respawn
    for n in range(3):
        pl.wait_for(lambda: len(gw.worker_pids()) == 2, 15, what="two workers")
        pid = int(re.findall(r"worker started\S* slot=0 pid=(\d+)", gw.log_text())[-1])
        os.kill(pid, signal.SIGKILL)
        pl.wait_for(lambda: gw.log_text().count("worker died") == n + 1, 10, what="reap")
    assert "respawn_in_ms=4000" in gw.log_text()
    t0 = time.monotonic()
    served = 0
    for _ in range(20):
        try:
            served += status_of(gw.port, timeout=0.5) == 200
        except OSError:
            pass
    took = time.monotonic() - t0
    assert served == 20 and took < 2.0, (served, took)
    # and slot 0 comes back, on a fresh socket that takes its share again
    pl.wait_for(lambda: len(gw.worker_pids()) == 2, 10, what="respawn")
    assert all(status_of(gw.port) == 200 for _ in range(20))
