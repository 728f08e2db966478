"""
Gateway HTTP on the WebSocket port: /healthz, /metrics, 404, and every way
an upgrade request can be refused (400, 403, 405, 426, 431), plus the
handshake timeout.
"""
import re
import socket
import time

from lib import pl


def metric(text, name, labels=""):
    """Value of the series name{labels} in a Prometheus page (labels as written)."""
    series = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in metrics:\n{text}")


def get_metrics(gw):
    status, hdrs, body = gw.http_get("/metrics")
    assert status == 200
    assert hdrs["content-type"].startswith("text/plain")
    return body.decode()


def test_healthz_ok(gateway):
    gw = gateway(echo_path="/echo")
    status, hdrs, body = gw.http_get("/healthz")
    assert (status, body) == (200, b"ok\n")
    assert hdrs["connection"] == "close"


def test_unknown_path_404(gateway):
    gw = gateway(echo_path="/echo")
    assert gw.http_get("/nope")[0] == 404
    assert gw.http_get("/")[0] == 404
    assert gw.http_get("/wsx")[0] == 404


def test_metrics_lists_every_family(gateway):
    gw = gateway(echo_path="/echo")
    text = get_metrics(gw)
    for name in ["parley_connections_open", "parley_connections_total", "parley_frames_in_total",
                 "parley_frames_out_total", "parley_bytes_in_total", "parley_bytes_out_total",
                 "parley_handshake_failures_total", "parley_close_codes_sent_total"]:
        assert f"# TYPE {name} " in text, name
    # per-worker series for both workers
    assert 'parley_connections_total{worker="0"}' in text
    assert 'parley_connections_total{worker="1"}' in text
    assert 'parley_handshake_failures_total{reason="timeout"}' in text
    # every sample line is well-formed
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?\d+', line), line


def test_metrics_change_after_traffic(gateway):
    gw = gateway(echo_path="/echo")
    before = get_metrics(gw)
    n = 6
    for i in range(n):
        with pl.RawWS(gw.port) as r:
            assert r.upgrade("/echo")[0] == 101
            r.send_frame(pl.OP_TEXT, b"hello %d" % i)
            f = r.recv_frame()
            assert f.payload == b"hello %d" % i
            r.send_close(1000)
            assert r.recv_close() == (1000, "")
    assert gw.http_get("/nope")[0] == 404
    after = get_metrics(gw)
    # the two /metrics requests and the 404 are connections too
    assert metric(after, "parley_connections_total") >= metric(before, "parley_connections_total") + n + 2
    assert metric(after, "parley_frames_in_total") >= metric(before, "parley_frames_in_total") + 2 * n
    assert metric(after, "parley_frames_out_total") >= metric(before, "parley_frames_out_total") + 2 * n
    assert metric(after, "parley_bytes_in_total") > metric(before, "parley_bytes_in_total")
    assert metric(after, "parley_bytes_out_total") > metric(before, "parley_bytes_out_total")
    assert metric(after, "parley_close_codes_sent_total", 'code="1000"') >= n
    assert metric(after, "parley_handshake_failures_total", 'reason="not_found"') >= 1
    # the sum equals the per-worker series
    total = metric(after, "parley_connections_total")
    per = sum(metric(after, "parley_connections_total", f'worker="{w}"') for w in (0, 1))
    assert total == per
    # only the /metrics request itself is open while it is being answered,
    # once the workers have seen the earlier clients go (the 404's worker
    # may still be closing its socket when we ask, on a loaded machine)
    pl.wait_for(lambda: metric(get_metrics(gw), "parley_connections_open") == 1, timeout=5,
                what="connections_open back to 1")


def refused(gw, headers=None, path="/ws", **kw):
    with pl.RawWS(gw.port) as r:
        status, hdrs = r.upgrade(path, headers=headers, **kw)
        assert hdrs.get("connection", "").lower() == "close"
        assert r.wait_eof(), "connection left open after the error response"
        return status, hdrs


def test_missing_key_400(gateway):
    gw = gateway(echo_path="/echo")
    assert refused(gw, {"Sec-WebSocket-Key": None})[0] == 400


def test_bad_key_400(gateway):
    gw = gateway(echo_path="/echo")
    assert refused(gw, key="AAAAAAAAAAAAAAAAAAAA")[0] == 400  # 15 bytes
    assert refused(gw, key="not-base64-at-all!!!!!==")[0] == 400


def test_missing_upgrade_headers_400(gateway):
    gw = gateway(echo_path="/echo")
    assert refused(gw, {"Upgrade": None})[0] == 400
    assert refused(gw, {"Connection": None})[0] == 400
    assert refused(gw, {"Upgrade": "h2c"})[0] == 400


def test_connection_token_list_upgrades(gateway):
    gw = gateway(echo_path="/echo")
    with pl.RawWS(gw.port) as r:
        status, hdrs = r.upgrade("/echo", headers={"Connection": "keep-alive, Upgrade",
                                                   "upgrade": "WebSocket"})
        assert status == 101
        assert hdrs["sec-websocket-accept"] == pl.accept_key(r.key)


def test_version_12_426(gateway):
    gw = gateway(echo_path="/echo")
    status, hdrs = refused(gw, version="12")
    assert status == 426
    assert hdrs["sec-websocket-version"] == "13"


def test_malformed_request_400(gateway):
    gw = gateway(echo_path="/echo")
    for raw in [b"GARBAGE\r\n\r\n", b"GET /ws HTTP/1.1\r\nNo colon\r\n\r\n",
                b"GET /ws HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"]:
        with pl.RawWS(gw.port) as r:
            r.send(raw)
            assert r.read_response_head()[0] == 400, raw


def test_post_405(gateway):
    gw = gateway(echo_path="/echo")
    with pl.RawWS(gw.port) as r:
        r.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert r.read_response_head()[0] == 405


def test_head_over_8k_431(gateway):
    gw = gateway(echo_path="/echo")
    with pl.RawWS(gw.port) as r:
        status, _ = r.upgrade("/ws", headers={"X-Filler": "a" * 9000})
        assert status == 431
    # also when the head never ends
    with pl.RawWS(gw.port) as r:
        r.send(b"GET /ws HTTP/1.1\r\nX-Filler: " + b"b" * 10000)
        assert r.read_response_head()[0] == 431


def test_origin_allow_list_403(gateway):
    gw = gateway(echo_path="/echo", origins="https://chat.example,https://other.example")
    assert refused(gw, path="/echo", origin="https://evil.example")[0] == 403
    with pl.RawWS(gw.port) as r:
        assert r.upgrade("/echo", origin="https://other.example")[0] == 101
    with pl.RawWS(gw.port) as r:  # non-browser clients send no Origin
        assert r.upgrade("/echo")[0] == 101
    assert metric(get_metrics(gw), "parley_handshake_failures_total", 'reason="origin"') == 1


def test_handshake_byte_by_byte(gateway):
    gw = gateway(echo_path="/echo")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = (f"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    with pl.RawWS(gw.port) as r:
        r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in req:
            r.send(bytes([b]))
            time.sleep(0.001)
        status, hdrs = r.read_response_head()
        assert status == 101
        assert hdrs["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_frames_in_same_packet_as_handshake(gateway):
    gw = gateway(echo_path="/echo")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = (f"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    with pl.RawWS(gw.port) as r:
        r.send(req + pl.encode_frame(pl.OP_TEXT, b"early"))
        assert r.read_response_head()[0] == 101
        assert r.recv_frame().payload == b"early"


def test_handshake_timeout(gateway):
    gw = gateway(echo_path="/echo", handshake_timeout="300ms")
    with pl.RawWS(gw.port) as r:
        r.send(b"GET /ws HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert r.wait_eof(timeout=3)
        assert time.monotonic() - t0 < 2
    with pl.RawWS(gw.port) as r:  # silent clients too
        assert r.wait_eof(timeout=3)
    pl.wait_for(lambda: metric(get_metrics(gw), "parley_handshake_failures_total",
                               'reason="timeout"') >= 2, 3, what="timeout counted")
