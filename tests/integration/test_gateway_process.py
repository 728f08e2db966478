"""
Gateway processes: the master replaces dead workers, drains on SIGTERM
(clients get 1001, exit 0 within the drain timeout), rolls workers on
SIGHUP without refusing connections, and refuses a bad config before
forking (exit 2, key and line named).
"""
import os
import signal
import socket
import subprocess
import threading
import time

from lib import pl

ECHO = {"echo_path": "/echo"}


def echo_once(port, text=b"ping"):
    with pl.RawWS(port) as r:
        status, _ = r.upgrade("/echo")
        assert status == 101
        r.send_frame(pl.OP_TEXT, text)
        f = r.recv_frame()
        assert f.payload == text
        r.send_close(1000)
        assert r.recv_close()[0] == 1000


def workers_of(gw, n=2, timeout=10):
    pl.wait_for(lambda: len(gw.worker_pids()) == n, timeout, what=f"{n} workers")
    return sorted(gw.worker_pids())


def test_killed_worker_is_replaced(gateway):
    gw = gateway(**ECHO)
    before = workers_of(gw)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    pl.wait_for(lambda: victim not in gw.worker_pids() and len(gw.worker_pids()) == 2, 10,
                what="replacement worker")
    assert gw.running()
    for i in range(20):  # both slots' sockets serve again
        echo_once(gw.port, b"after kill %d" % i)
    log = gw.log_text()
    assert f"pid={victim}" in log and "signal=9" in log


def test_quick_deaths_back_off(gateway):
    gw = gateway(**ECHO)
    delays = []
    for _ in range(3):
        pids = workers_of(gw)
        os.kill(pids[0], signal.SIGKILL)
        pl.wait_for(lambda: pids[0] not in gw.worker_pids() and len(gw.worker_pids()) == 2, 15,
                    what="replacement")
    for line in gw.log_text().splitlines():
        if "worker died" in line:
            delays.append(int(line.split("respawn_in_ms=")[1].split()[0]))
    assert delays[:1] == [1000] and delays[1:] == sorted(delays[1:]) and delays[-1] >= 2000, delays
    echo_once(gw.port)


def test_sigterm_drains_clients_with_1001(gateway):
    gw = gateway(drain_timeout="5s", **ECHO)
    clients = []
    for _ in range(6):
        r = pl.RawWS(gw.port)
        assert r.upgrade("/echo")[0] == 101
        clients.append(r)
    # a request still in progress during the drain gets 503 from /healthz
    probe = socket.create_connection(("127.0.0.1", gw.port))
    probe.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(0.2)
    t0 = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    for r in clients:
        assert r.recv_close(timeout=3)[0] == 1001
        r.send_close(1001)
    probe.sendall(b"Host: x\r\n\r\n")
    data = b""
    probe.settimeout(3)
    while True:
        chunk = probe.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 503 "), data
    probe.close()
    assert gw.wait(10) == 0
    assert time.monotonic() - t0 < 5
    for r in clients:
        r.close()
    assert not pl.port_open(gw.port)


def test_drain_timeout_drops_unresponsive_clients(gateway):
    gw = gateway(drain_timeout="1s", close_timeout="30s", **ECHO)
    r = pl.RawWS(gw.port)
    assert r.upgrade("/echo")[0] == 101
    t0 = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    assert r.recv_close(timeout=3)[0] == 1001  # ... and never answers it
    assert gw.wait(10) == 0
    assert time.monotonic() - t0 < 4
    assert r.wait_eof(1)
    r.close()
    assert "drain timeout" in gw.log_text()


def test_sigint_stops_like_sigterm(gateway):
    gw = gateway(**ECHO)
    assert gw.stop(signal.SIGINT, timeout=15) == 0


def upgrade_once(port):
    """One connection that must be accepted and upgraded; an echo may be cut
    short by a drain (1001), which is not a refusal."""
    with pl.RawWS(port) as r:
        status, _ = r.upgrade("/echo")
        assert status == 101
        r.send_frame(pl.OP_TEXT, b"x")
        f = r.recv_frame()
        if f.opcode == pl.OP_CLOSE:
            assert pl.decode_close(f.payload)[0] == 1001
            return
        assert f.payload == b"x"
        r.send_close(1000)
        assert r.recv_close()[0] in (1000, 1001)


class ConnectLoop:
    def __init__(self, port):
        self.port, self.count, self.errors = port, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                upgrade_once(self.port)
                self.count += 1
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.count, self.errors


def start_with_file(workdir, conf_text, *extra):
    conf = os.path.join(workdir, "gw.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    port = int(conf_text.split("listen = 127.0.0.1:")[1].split()[0])
    argv = [pl.binary("gateway"), "-c", conf, "--workers", "2", "--token_secret", "test-secret",
            *extra]
    gw = pl.Gateway(argv, os.path.join(workdir, "gateway.log"), port, env=pl.clean_env())
    gw.wait_healthy(10)
    return gw, conf


def test_sighup_rolls_workers_and_applies_config(redis, workdir):
    port = pl.free_port()
    gw, conf = start_with_file(workdir, f"listen = 127.0.0.1:{port}\necho_path = /echo\n"
                               f"redis_url = {redis.url}\n", "--drain_timeout", "3s")
    try:
        old = set(workers_of(gw))
        keeper = pl.RawWS(port)  # a long-lived client on an old worker
        assert keeper.upgrade("/echo")[0] == 101
        with open(conf, "w") as f:  # a reloadable change
            f.write(f"listen = 127.0.0.1:{port}\necho_path = /echo2\nredis_url = {redis.url}\n")
        gw.send_signal(signal.SIGHUP)
        assert keeper.recv_close(timeout=5)[0] == 1001
        keeper.send_close(1001)
        keeper.close()
        pl.wait_for(lambda: len(set(gw.worker_pids()) & old) == 0 and len(gw.worker_pids()) == 2,
                    10, what="old workers gone")
        with pl.RawWS(port) as r:
            assert r.upgrade("/echo2")[0] == 101
        with pl.RawWS(port) as r:
            assert r.upgrade("/echo")[0] == 404
        log = gw.log_text()
        assert "reloading" in log and "replaced worker exited" in log
    finally:
        assert gw.stop(signal.SIGTERM, timeout=20) == 0
    assert gw.crash_report() is None


def test_sighup_loop_never_refused(gateway):
    gw = gateway(drain_timeout="2s", **ECHO)
    old = set(workers_of(gw))
    loop = ConnectLoop(gw.port)
    time.sleep(0.3)
    gw.send_signal(signal.SIGHUP)
    pl.wait_for(lambda: len(set(gw.worker_pids()) & old) == 0 and len(gw.worker_pids()) == 2, 10,
                what="workers replaced")
    time.sleep(0.5)
    gw.send_signal(signal.SIGHUP)  # twice in a row
    time.sleep(1.0)
    count, errors = loop.finish()
    assert not errors, errors[:5]
    assert count > 20


def test_sighup_with_bad_config_keeps_running(redis, workdir):
    port = pl.free_port()
    base = f"listen = 127.0.0.1:{port}\necho_path = /echo\nredis_url = {redis.url}\n"
    gw, conf = start_with_file(workdir, base)
    try:
        old = set(workers_of(gw))
        with open(conf, "w") as f:
            f.write(base + "ping_interval = banana\n")
        gw.send_signal(signal.SIGHUP)
        pl.wait_for(lambda: "reload failed" in gw.log_text(), 5, what="reload error logged")
        time.sleep(0.2)
        assert set(gw.worker_pids()) == old
        echo_once(port)
        with open(conf, "w") as f:  # listen needs a restart: logged, old address kept
            f.write(base.replace(f":{port}", f":{pl.free_port()}"))
        gw.send_signal(signal.SIGHUP)
        pl.wait_for(lambda: "needs a restart" in gw.log_text(), 5, what="listen change logged")
        pl.wait_for(lambda: len(set(gw.worker_pids()) & old) == 0, 10, what="workers replaced")
        echo_once(port)
    finally:
        assert gw.stop(signal.SIGTERM, timeout=20) == 0


def run_gateway(*args, timeout=10):
    return subprocess.run([pl.binary("gateway"), *args], capture_output=True, text=True,
                          timeout=timeout, env=pl.clean_env())


def test_check_config_bad_file_exits_2_naming_key_and_line(workdir):
    conf = os.path.join(workdir, "bad.conf")
    with open(conf, "w") as f:
        f.write("# comment\nworkers = 2\n\nping_interval = forever\n")
    p = run_gateway("-c", conf, "--check-config")
    assert p.returncode == 2
    assert "ping_interval" in p.stderr and f"{conf}:4" in p.stderr, p.stderr


def test_check_config_good_exits_0(workdir):
    conf = os.path.join(workdir, "ok.conf")
    with open(conf, "w") as f:
        f.write("workers = 2\necho_path = /echo\n")
    p = run_gateway("-c", conf, "--check-config", "--max_message_size", "128k")
    assert p.returncode == 0, p.stderr


def test_bad_config_exits_2_before_forking(workdir):
    conf = os.path.join(workdir, "bad.conf")
    with open(conf, "w") as f:
        f.write("listen = nowhere\n")
    p = run_gateway("-c", conf)
    assert p.returncode == 2
    assert "listen" in p.stderr and f"{conf}:1" in p.stderr
    p = run_gateway("--workers", "-3")
    assert p.returncode == 2 and "workers" in p.stderr


def test_help_lists_keys():
    p = run_gateway("--help")
    assert p.returncode == 0
    assert "--check-config" in p.stdout and "drain_timeout" in p.stdout


def test_sigterm_without_clients_is_prompt(gateway):
    gw = gateway(**ECHO)
    t0 = time.monotonic()
    assert gw.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - t0 < 2


def test_workers_0_means_one_per_cpu(gateway):
    gw = gateway(workers=0, **ECHO)
    n = os.cpu_count()
    pl.wait_for(lambda: len(gw.worker_pids()) == n, 10, what=f"{n} workers")
    echo_once(gw.port)


def test_open_connections_gauge(gateway):
    gw = gateway(**ECHO)
    clients = []
    for _ in range(5):
        r = pl.RawWS(gw.port)
        assert r.upgrade("/echo")[0] == 101
        clients.append(r)
    body = gw.http_get("/metrics")[2].decode()
    assert "\nparley_connections_open 6\n" in body  # 5 + the /metrics request
    victim = workers_of(gw)[0]
    os.kill(victim, signal.SIGKILL)  # a dead worker's connections leave the gauge
    pl.wait_for(lambda: len(gw.worker_pids()) == 2 and victim not in gw.worker_pids(), 10,
                what="replacement")
    for r in clients:
        r.close()

    def settled():
        body = gw.http_get("/metrics")[2].decode()
        return "\nparley_connections_open 1\n" in body
    pl.wait_for(settled, 5, what="gauge back to 1")
