// TURN in the browser: with --turn-secret, a page joins through signalroom-client, takes the
// minted TURN entry from the join answer, and two RTCPeerConnections restricted to relay
// candidates (iceTransportPolicy "relay") connect and exchange data through a real coturn on
// 127.0.0.1. A tampered credential gathers no relay candidate.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { siteDir, startServer, launch, openPage, cleanup } from "./helpers.mjs";

const TURN_SECRET = "browser-turn-secret";
let dir, server, browser, page, turn, turnPort;

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}

before(async () => {
  assert.equal(spawnSync("sh", ["-c", "command -v turnserver"]).status, 0, "coturn is needed (cargo xtask test installs it)");
  turnPort = await freePort();
  turn = spawn("turnserver", ["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${turnPort}`,
    "--use-auth-secret", `--static-auth-secret=${TURN_SECRET}`, "--realm=signalroom.test", "--no-tls", "--no-dtls",
    "--no-cli", "--allow-loopback-peers", "--log-file=stdout", "--simple-log", `--pidfile=/tmp/signalroom-bturn-${process.pid}.pid`],
  { stdio: "ignore" });
  // Ready once its TCP listener accepts (bounded: 100 tries, 100 ms apart).
  for (let i = 0; ; i += 1) {
    const up = await new Promise((resolve) => {
      const s = net.connect(turnPort, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (i === 100) throw new Error("turnserver did not listen");
    await new Promise((r) => setTimeout(r, 100));
  }
  dir = siteDir();
  server = await startServer(dir, 0, ["--turn-secret", TURN_SECRET, "--turn-urls", `turn:127.0.0.1:${turnPort}`]);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  turn?.kill("SIGTERM");
  if (dir) cleanup(dir);
});

/** In the page: two relay-only peer connections with `ice`; resolves {state, got, types}. */
const relayCall = (ice) => page.evaluate(async (ice) => {
  const config = { iceServers: ice, iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  const types = [];
  a.onicecandidate = (e) => { if (e.candidate) { types.push(e.candidate.type); b.addIceCandidate(e.candidate); } };
  b.onicecandidate = (e) => { if (e.candidate) { types.push(e.candidate.type); a.addIceCandidate(e.candidate); } };
  const channel = a.createDataChannel("relay");
  const got = new Promise((resolve) => { b.ondatachannel = (e) => { e.channel.onmessage = (m) => resolve(m.data); }; });
  channel.onopen = () => channel.send("through the relay");
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const outcome = await Promise.race([got.then((data) => ({ got: data })), new Promise((r) => setTimeout(() => r({ got: null }), 10000))]);
  const state = a.connectionState;
  a.close(); b.close();
  return { ...outcome, state, types };
}, ice);

test("relay-only peer connections connect through coturn with the credentials the join answer carries", async () => {
  const ice = await page.evaluate(async () => {
    const c = new window.lib.SignalroomClient(location.origin);
    const joined = await c.join("relay-room", "relay-peer", "R");
    c.close();
    return joined.ice_servers;
  });
  const entry = ice.at(-1);
  assert.match(entry.username, /^\d+:relay-peer$/);
  const r = await relayCall(ice);
  assert.equal(r.got, "through the relay", JSON.stringify(r));
  assert.ok(r.types.length > 0 && r.types.every((t) => t === "relay"), `only relay candidates: ${r.types}`);

  const tampered = [{ ...entry, credential: (entry.credential[0] === "A" ? "B" : "A") + entry.credential.slice(1) }];
  const bad = await relayCall(tampered);
  assert.equal(bad.got, null);
  assert.deepEqual(bad.types, [], "no relay candidate without valid credentials");
});
