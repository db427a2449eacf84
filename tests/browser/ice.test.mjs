// PeerMesh's ICE servers: by default the `ice_servers` the server sent in its join answer
// (`signalroom --ice-servers`), unless the app passes its own. The page's RTCPeerConnection
// constructor is wrapped to record the configuration each connection is made with; the
// STUN addresses are unreachable on purpose: host candidates on loopback still connect.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { siteDir, startServer, launch, openPage, cleanup } from "./helpers.mjs";

const SERVER_ICE = [{ urls: "stun:127.0.0.1:9" }];
const APP_ICE = [{ urls: ["stun:127.0.0.1:7"], username: "u", credential: "c" }];

let dir, server, browser, page;

before(async () => {
  dir = siteDir();
  server = await startServer(dir, 0, ["--ice-servers", JSON.stringify(SERVER_ICE)]);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

test("PeerMesh takes the server's ice_servers by default and the app's when given", async () => {
  const r = await page.evaluate(async ({ url, appIce }) => {
    const configs = [];
    const Native = window.RTCPeerConnection;
    function Recording(config) {
      configs.push(JSON.parse(JSON.stringify(config ?? null)));
      return new Native(config);
    }
    Recording.prototype = Native.prototype;
    window.RTCPeerConnection = Recording;
    const { SignalroomClient, PeerMesh } = window.lib;
    const a = new SignalroomClient(url);
    const b = new SignalroomClient(url);
    const meshA = new PeerMesh(a);
    const meshB = new PeerMesh(b, { iceServers: appIce });
    const opened = Promise.all([
      new Promise((res) => meshA.onChannel(() => res())),
      new Promise((res) => meshB.onChannel(() => res())),
    ]);
    const joined = await a.join("ice-room", "ice-a", "A");
    await b.join("ice-room", "ice-b", "B");
    await opened;
    const out = { sent: joined.ice_servers, configs, connected: [meshA.connectedPeers(), meshB.connectedPeers()] };
    meshA.close();
    meshB.close();
    a.close();
    b.close();
    window.RTCPeerConnection = Native;
    return out;
  }, { url: server.url, appIce: APP_ICE });
  assert.deepEqual(r.sent, SERVER_ICE);
  assert.deepEqual(r.connected, [["ice-b"], ["ice-a"]]);
  const used = r.configs.map((c) => c?.iceServers);
  assert.equal(used.length, 2, "one connection per side");
  assert.ok(used.some((ice) => JSON.stringify(ice) === JSON.stringify(SERVER_ICE)), JSON.stringify(used));
  assert.ok(used.some((ice) => JSON.stringify(ice) === JSON.stringify(APP_ICE)), JSON.stringify(used));
});
