// Fault: the server is killed (SIGKILL, no goodbye) while 60 autoRejoin clients sit in 6
// rooms, and restarted on the same port. Every client must be back in its room within 10 s,
// and the reconnects must be spread out by the clients' jittered backoff rather than arrive
// as one thundering herd. The spread is printed, for docs/reliability.md.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { siteDir, startServer, launch, openPage, cleanup } from "./helpers.mjs";

const CLIENTS = 60;
const ROOMS = 6;
let dir, server, browser, page;

before(async () => {
  dir = siteDir();
  server = await startServer(dir, 0, []);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

/** Every room's peer_ids, from the server's listing. */
async function listing() {
  const res = await fetch(`${server.url}/api/webrtc/rooms`);
  const rooms = await res.json();
  return Object.fromEntries(Object.entries(rooms).map(([k, r]) => [k, r.peers.map((p) => p.peer_id).sort()]));
}

function expected() {
  const want = {};
  for (let i = 0; i < CLIENTS; i++) (want[`load-${i % ROOMS}`] ??= []).push(`p${i}`);
  for (const k of Object.keys(want)) want[k].sort();
  return want;
}

test("after kill -9 and a restart, every autoRejoin client is back in its room within 10 s, reconnects spread by backoff", async () => {
  await page.evaluate(async ({ url, clients, rooms }) => {
    window.load = [];
    const joins = [];
    for (let i = 0; i < clients; i++) {
      const rec = { c: new lib.SignalroomClient(url), connectedAt: [] };
      rec.c.onConnectionChange((s) => { if (s === "connected") rec.connectedAt.push(performance.now()); });
      window.load.push(rec);
      joins.push(rec.c.join(`load-${i % rooms}`, `p${i}`, `Peer ${i}`));
    }
    await Promise.all(joins);
  }, { url: server.url, clients: CLIENTS, rooms: ROOMS });
  assert.deepEqual(await listing(), expected());

  const killedAt = await page.evaluate(() => performance.now());
  await server.stop("SIGKILL");
  server = await startServer(dir, server.port, []);

  // Back when the server lists everyone in their rooms and every client has its full room
  // (bounded: 20 s, twice the promise).
  const want = JSON.stringify(expected());
  const clientsBack = ({ rooms, size }) =>
    window.load.every((r, i) => r.c.roomName === `load-${i % rooms}` && r.c.peers.length === size);
  let backAt;
  for (let tries = 0; ; tries++) {
    const serverBack = JSON.stringify(await listing().catch(() => ({}))) === want;
    if (serverBack && await page.evaluate(clientsBack, { rooms: ROOMS, size: CLIENTS / ROOMS })) {
      backAt = await page.evaluate(() => performance.now());
      break;
    }
    assert.ok(tries < 400, `not back after 20 s: ${JSON.stringify(await listing().catch(() => ({})))}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const r = await page.evaluate((since) => {
    const times = window.load.map((x) => x.connectedAt.find((t) => t > since) - since).sort((a, b) => a - b);
    return { first: times[0], last: times.at(-1), median: times[times.length >> 1], times };
  }, killedAt);
  const recoveredMs = Math.round(backAt - killedAt);
  const spreadMs = Math.round(r.last - r.first);
  console.log(`# restart under load: ${CLIENTS} clients back in ${recoveredMs} ms; reconnects from ${Math.round(r.first)} to ${Math.round(r.last)} ms after the kill (spread ${spreadMs} ms, median ${Math.round(r.median)} ms)`);
  assert.ok(recoveredMs <= 10_000, `back after ${recoveredMs} ms`);
  // socket.io-client's backoff randomizes each delay by +-50 %: 60 clients spread over hundreds of ms.
  assert.ok(spreadMs >= 200, `reconnects within ${spreadMs} ms of each other: a thundering herd`);
  await page.evaluate(() => window.load.forEach((x) => x.c.close()));
});
