"""
WebSocket conformance of the gateway transport, through the echo endpoint
(echo_path=/echo: every text or binary message comes back with the same
opcode) with the websockets library and with hand-made frames; plus the
/ws rules that need no chat protocol (binary -> 1003) and server pings.
"""
import asyncio
import socket
import time

import pytest
import websockets

from lib import pl

ECHO = {"echo_path": "/echo", "max_message_size": "1m"}


@pytest.fixture
def gw(gateway):
    return gateway(**ECHO)


def raw(gw, path="/echo"):
    r = pl.RawWS(gw.port)
    status, _ = r.upgrade(path)
    assert status == 101
    return r


def expect_close(r, code):
    got = r.recv_close()
    assert got[0] == code, f"wanted close {code}, got {got}"
    r.send_close(code if code not in (1005, 1006) else 1000)
    assert r.wait_eof(), "server kept the TCP connection open after the close handshake"


# ------------------------------------------------------------ websockets client

async def test_echo_text_binary_fragmented(gw):
    async with pl.client(gw.url + "/echo") as c:
        await c.send("hello")
        assert await c.recv() == "hello"
        await c.send(b"\x00\x01\xff")
        assert await c.recv() == b"\x00\x01\xff"
        await c.send(["frag", "men", "ted"])
        assert await c.recv() == "fragmented"
        await c.send([b"ab", b"cd"])
        assert await c.recv() == b"abcd"
        await c.send("")
        assert await c.recv() == ""
        await c.send("é€😀")
        assert await c.recv() == "é€😀"


async def test_echo_16_and_64_bit_lengths(gw):
    async with pl.client(gw.url + "/echo") as c:
        for n in (125, 126, 200, 65535, 65536, 300000):
            msg = "x" * n
            await c.send(msg)
            assert await c.recv(timeout=5) == msg, n


async def test_many_messages_in_one_burst(gw):
    async with pl.client(gw.url + "/echo") as c:
        for i in range(500):
            await c.send(f"m{i}")
        for i in range(500):
            assert await c.recv() == f"m{i}"


async def test_client_close_is_echoed(gw):
    async with pl.client(gw.url + "/echo") as c:
        await c.close(4321, "bye")
        assert c.close_code == 4321


async def test_binary_on_chat_path_1003(gateway):
    gw = gateway(**ECHO)
    async with pl.client(gw.url + "/ws") as c:
        await c.send(b"\x01\x02")
        code, _ = await c.expect_close()
        assert code == 1003


# ------------------------------------------------------------ raw frames

def test_unmasked_frame_1002(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"hi", mask=False)
        expect_close(r, 1002)


def test_masked_frames_with_various_keys(gw):
    with raw(gw) as r:
        for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78"):
            r.send_frame(pl.OP_TEXT, b"masked payload", mask_key=key)
            f = r.recv_frame()
            assert (f.opcode, f.payload, f.masked, f.fin) == (pl.OP_TEXT, b"masked payload", False, True)


def test_fragmentation_with_interleaved_ping(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"ab", fin=False)
        r.send_frame(pl.OP_CONT, b"cd", fin=False)
        r.send_frame(pl.OP_PING, b"are you there")
        r.send_frame(pl.OP_CONT, b"", fin=False)
        r.send_frame(pl.OP_CONT, b"ef", fin=True)
        f = r.recv_frame()
        assert (f.opcode, f.payload) == (pl.OP_PONG, b"are you there")
        f = r.recv_frame()
        assert (f.opcode, f.payload, f.fin) == (pl.OP_TEXT, b"abcdef", True)
        r.send_frame(pl.OP_BINARY, b"\x00", fin=False)
        r.send_frame(pl.OP_CONT, b"\x01", fin=True)
        f = r.recv_frame()
        assert (f.opcode, f.payload) == (pl.OP_BINARY, b"\x00\x01")


def test_ping_gets_pong_with_same_payload(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_PING, bytes(range(125)))
        f = r.recv_frame()
        assert (f.opcode, f.payload) == (pl.OP_PONG, bytes(range(125)))
        r.send_frame(pl.OP_PONG, b"unsolicited")  # ignored
        r.send_frame(pl.OP_TEXT, b"still open")
        assert r.recv_frame().payload == b"still open"


def test_continuation_without_start_1002(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_CONT, b"x")
        expect_close(r, 1002)


def test_new_message_inside_fragmented_1002(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"a", fin=False)
        r.send_frame(pl.OP_TEXT, b"b")
        expect_close(r, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_1002(gw, rsv):
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"x", rsv=rsv)
        expect_close(r, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_1002(gw, opcode):
    with raw(gw) as r:
        r.send_frame(opcode, b"x")
        expect_close(r, 1002)


def test_control_frame_rules_1002(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_PING, b"x" * 126)
        expect_close(r, 1002)
    with raw(gw) as r:
        r.send_frame(pl.OP_PING, b"x", fin=False)
        expect_close(r, 1002)


def test_invalid_utf8_1007(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"ok \xc3\x28")
        expect_close(r, 1007)
    with raw(gw) as r:  # surrogate
        r.send_frame(pl.OP_TEXT, b"\xed\xa0\x80")
        expect_close(r, 1007)
    with raw(gw) as r:  # overlong
        r.send_frame(pl.OP_TEXT, b"\xc0\xaf")
        expect_close(r, 1007)


def test_utf8_code_point_split_across_fragments(gw):
    euro = "€".encode()  # e2 82 ac
    with raw(gw) as r:
        r.send_frame(pl.OP_TEXT, b"a" + euro[:1], fin=False)
        r.send_frame(pl.OP_CONT, euro[1:2], fin=False)
        r.send_frame(pl.OP_CONT, euro[2:] + b"b", fin=True)
        assert r.recv_frame().payload == b"a" + euro + b"b"
    with raw(gw) as r:  # a message may not end inside a code point
        r.send_frame(pl.OP_TEXT, b"a" + euro[:2], fin=False)
        r.send_frame(pl.OP_CONT, b"", fin=True)
        expect_close(r, 1007)
    with raw(gw) as r:  # invalid continuation detected in a later fragment
        r.send_frame(pl.OP_TEXT, euro[:1], fin=False)
        r.send_frame(pl.OP_CONT, b"\x28", fin=True)
        expect_close(r, 1007)


def test_oversized_declared_length_1009_before_payload(gateway):
    gw = gateway(echo_path="/echo", max_message_size="1k")
    with raw(gw) as r:
        # header only: the server must not wait for the 10 MB it announces
        r.send(pl.encode_frame(pl.OP_BINARY, b"", length=10 * 1024 * 1024)[:10])
        assert r.recv_close()[0] == 1009
    with raw(gw) as r:  # 64-bit length with the top bit set
        r.send(b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00" + b"mask")
        assert r.recv_close()[0] in (1002, 1009)
    with raw(gw) as r:  # fragments adding up past the limit
        r.send_frame(pl.OP_TEXT, b"a" * 600, fin=False)
        r.send_frame(pl.OP_CONT, b"a" * 600, fin=True)
        assert r.recv_close()[0] == 1009


def test_16_and_64_bit_length_raw(gw):
    with raw(gw) as r:
        for n in (126, 65535, 65536, 100000):
            payload = bytes(i % 251 for i in range(n))
            r.send_frame(pl.OP_BINARY, payload)
            f = r.recv_frame(timeout=5)
            assert (f.opcode, len(f.payload), f.payload == payload) == (pl.OP_BINARY, n, True)


def test_frame_split_across_reads(gw):
    with raw(gw) as r:
        data = pl.encode_frame(pl.OP_TEXT, b"split into pieces" * 20)
        for i in range(0, len(data), 7):
            r.send(data[i:i + 7])
            time.sleep(0.002)
        assert r.recv_frame().payload == b"split into pieces" * 20


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4000, 4999])
def test_valid_close_codes_echoed(gw, code):
    with raw(gw) as r:
        r.send_close(code, "reason")
        assert r.recv_close()[0] == code
        assert r.wait_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000, 65535])
def test_invalid_close_codes_1002(gw, code):
    with raw(gw) as r:
        r.send_close(code)
        assert r.recv_close()[0] == 1002


def test_empty_close_answered_1000(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_CLOSE, b"")
        assert r.recv_close()[0] == 1000
        assert r.wait_eof()


def test_one_byte_close_1002(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_CLOSE, b"\x03")
        assert r.recv_close()[0] == 1002


def test_close_reason_not_utf8_1007(gw):
    with raw(gw) as r:
        r.send_frame(pl.OP_CLOSE, b"\x03\xe8\xff\xfe")
        assert r.recv_close()[0] == 1007


def test_nothing_after_close_is_processed(gw):
    with raw(gw) as r:
        r.send(pl.encode_frame(pl.OP_CLOSE, pl.close_payload(1000))
               + pl.encode_frame(pl.OP_TEXT, b"late"))
        f = r.recv_frame()
        assert f.opcode == pl.OP_CLOSE
        assert r.wait_eof()
        assert r.buf == b""


# ------------------------------------------------------------ server pings

def test_server_pings_and_drops_silent_peer(gateway):
    gw = gateway(echo_path="/echo", ping_interval="300ms", ping_timeout="300ms")
    with raw(gw) as r:
        t0 = time.monotonic()
        f = r.recv_frame(timeout=3)
        assert f.opcode == pl.OP_PING
        assert 0.2 < time.monotonic() - t0 < 2
        # no pong: dropped after ping_timeout (no close handshake with a dead peer)
        assert r.wait_eof(timeout=3)
    assert "ping timeout" in gw.log_text()


def test_server_ping_answered_keeps_connection(gateway):
    gw = gateway(echo_path="/echo", ping_interval="200ms", ping_timeout="200ms")
    with raw(gw) as r:
        deadline = time.monotonic() + 1.5
        pings = 0
        while time.monotonic() < deadline:
            f = r.recv_frame(timeout=2)
            assert f.opcode == pl.OP_PING
            pings += 1
            r.send_frame(pl.OP_PONG, f.payload)
        assert pings >= 3
        r.send_frame(pl.OP_TEXT, b"alive")
        while True:
            f = r.recv_frame()
            if f.opcode == pl.OP_TEXT:
                assert f.payload == b"alive"
                break


async def test_websockets_client_keepalive(gateway):
    gw = gateway(echo_path="/echo", ping_interval="200ms", ping_timeout="200ms")
    async with pl.client(gw.url + "/echo") as c:  # the library answers pings itself
        await asyncio.sleep(1.0)
        await c.send("still here")
        assert await c.recv() == "still here"


# ------------------------------------------------------------ slow consumers

def test_slow_consumer_closed_1013_with_whole_frames(gateway):
    gw = gateway(echo_path="/echo", max_message_size="1m", send_buffer_limit="256k")
    r = pl.RawWS(gw.port, timeout=10)
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    assert r.upgrade("/echo")[0] == 101
    payload = bytes(range(256)) * 256  # 64 KiB
    sent = 0
    try:
        for _ in range(64):  # 4 MiB of echoes the client does not read
            r.send_frame(pl.OP_BINARY, payload)
            sent += 1
    except OSError:
        pass  # the server may already have given up on us
    frames = 0
    while True:  # what arrives is whole frames, then the 1013 close frame
        f = r.recv_frame(timeout=10)
        if f.opcode == pl.OP_CLOSE:
            assert pl.decode_close(f.payload)[0] == 1013
            break
        assert f.opcode == pl.OP_BINARY and f.payload == payload
        frames += 1
    assert frames < sent
    r.close()
    status, _, body = gw.http_get("/metrics")
    assert 'parley_close_codes_sent_total{code="1013"} 1' in body.decode()
    assert "send buffer over limit" in gw.log_text()
