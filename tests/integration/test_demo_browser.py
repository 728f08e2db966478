"""
The demo page in a real browser: Debian's Chromium driven by playwright-core
(tests/e2e/demo_check.js) against a real gateway and Redis. Two users open
the page; presence, typing, a message and history paging are checked from
what the page shows.
"""
import functools
import http.server
import os
import shutil
import subprocess
import threading

from lib import pl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
E2E = os.path.join(ROOT, "tests", "e2e")


def serve_demo():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=os.path.join(ROOT, "demo"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def fill_room(gw, room, n):
    async with pl.client(gw.url + "/ws") as c:
        await c.send_json({"op": "auth", "id": 1, "token": pl.token("carol")})
        assert (await c.recv_json())["ok"]
        await c.send_json({"op": "join", "id": 2, "room": room})
        assert (await c.recv_json())["ok"]
        for i in range(1, n + 1):
            await c.send_json({"op": "send", "id": 100 + i, "room": room, "text": f"filler {i} "})
            assert (await c.recv_json())["ok"]


async def test_demo_page_two_users(gateway, workdir):
    assert shutil.which("node"), "node is missing (apt-get install -y nodejs)"
    assert os.path.isdir(os.path.join(E2E, "node_modules", "playwright-core")), \
        "run `npm ci` in tests/e2e (scripts/test.sh does)"
    assert os.path.exists("/usr/bin/chromium"), "chromium is missing (apt-get install -y chromium)"
    gw = gateway(rate_limit=1000, rate_burst=1000)
    room = "demo-" + os.urandom(4).hex()
    await fill_room(gw, room, 70)
    server = serve_demo()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/#ws={gw.url}/ws&token="
        shot = os.path.join(workdir, "demo.png")
        r = subprocess.run(
            ["node", "demo_check.js", base + pl.token("alice"), base + pl.token("bob"), room],
            cwd=E2E, capture_output=True, text=True, timeout=90,
            env=dict(os.environ, SCREENSHOT=shot))
        print(r.stdout, r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("ok: ") == 5
        assert os.path.getsize(shot) > 1000
    finally:
        server.shutdown()
