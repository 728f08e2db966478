// Drives the demo page (demo/index.html) in Debian's Chromium through
// playwright-core: two users open it, both show "online" and each other in
// the presence list, bob's message reaches alice with its seq, alice sees
// bob typing, and "load older" pages back through history.
// Usage: node demo_check.js <alice page URL> <bob page URL> <room>
// Prints one "ok: ..." line per check; exits non-zero on the first failure.
"use strict";
const { chromium } = require("playwright-core");

const [aliceUrl, bobUrl, room] = process.argv.slice(2);
const TIMEOUT = 10000;

function ok(what) {
  console.log(`ok: ${what}`);
}

async function open(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
  page.on("pageerror", (e) => console.log(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("#status:text('online')", { timeout: TIMEOUT });
  await page.fill("#room", room);
  await page.click("#join");
  await page.waitForSelector(`#room-name:text('${room}')`, { timeout: TIMEOUT });
  return page;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const alice = await open(browser, aliceUrl);
    const bob = await open(browser, bobUrl);
    ok("both pages authenticated and joined");

    await alice.waitForSelector("#users li:text-is('bob')", { timeout: TIMEOUT });
    await bob.waitForSelector("#users li:text-is('alice')", { timeout: TIMEOUT });
    ok("presence lists show the other user");

    await bob.type("#text", "hi");
    await alice.waitForSelector("#typing:has-text('bob is typing')", { timeout: TIMEOUT });
    ok("alice sees bob typing");

    const text = "hello <b>alice</b> & co";
    await bob.fill("#text", text);
    await bob.press("#text", "Enter");
    const line = alice.locator("#log p", { hasText: text });
    await line.waitFor({ timeout: TIMEOUT });
    const shown = await line.innerText();
    if (!/^#\d+ /.test(shown)) throw new Error(`no seq on alice's line: ${shown}`);
    if ((await alice.locator("#log b", { hasText: "alice" }).count()) !== 0)
      throw new Error("message text was rendered as HTML");
    await bob.locator("#log p", { hasText: text }).waitFor({ timeout: TIMEOUT });
    ok(`bob's message reached alice as text with its seq (${shown.split(" ")[0]})`);

    // The room was filled with older messages before the pages opened; the
    // pages show the newest 30, "load older" must bring seq 1 into view.
    const first = alice.locator("#log p", { hasText: /^#1 .*filler 1\s*$/ });
    for (let i = 0; i < 5 && (await first.count()) === 0; i++) {
      await alice.click("#older");
      await alice.waitForTimeout(300);
    }
    if ((await first.count()) !== 1)
      throw new Error("load older did not reach the first message");
    ok("load older pages back to the first message");

    await alice.screenshot({ path: process.env.SCREENSHOT || "/tmp/parley-demo.png" });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(`FAILED: ${e.message}`);
  process.exit(1);
});
