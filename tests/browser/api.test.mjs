// The npm package `signalroom-client` used directly from a plain page with an import
// map (tests/browser/pages/api.html), against the real server: every part of
// web-client/README.md.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repo, siteDir, startServer, launch, openPage, shot, cleanup } from "./helpers.mjs";

let dir, server, browser, page;

before(async () => {
  dir = siteDir();
  server = await startServer(dir);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

/** Runs `fn(lib, url, arg)` in the API page; `lib` has the package's classes, `window.t` is scratch space. */
const run = (fn, arg, p = page) =>
  p.evaluate(({ src, url, arg }) => {
    window.t ??= {};
    // eslint-disable-next-line no-new-func
    return new Function("lib", "url", "arg", `return (${src})(lib, url, arg);`)(window.lib, url, arg);
  }, { src: fn.toString(), url: server.url, arg });

test("the npm package has its name, version, dependency, types and README", () => {
  const pkg = JSON.parse(readFileSync(join(repo, "web-client/pkg/package.json"), "utf8"));
  const cargo = readFileSync(join(repo, "Cargo.toml"), "utf8");
  assert.equal(pkg.name, "signalroom-client");
  assert.equal(pkg.version, /\nversion = "([^"]+)"/.exec(cargo)[1]);
  assert.match(pkg.dependencies["socket.io-client"], /^\^4\.8/);
  const dts = readFileSync(join(repo, "web-client/pkg", pkg.types), "utf8");
  for (const name of ["class SignalroomClient", "class PeerMesh", "onPeers", "connectedPeers", "PeersEvent",
                      "constructor(url: string, options?: ClientOptions)"]) {
    assert.ok(dts.includes(name), `${name} in the .d.ts`);
  }
  assert.match(readFileSync(join(repo, "web-client/pkg/README.md"), "utf8"), /new PeerMesh/);
});

test("join resolves with the server's answer; onPeers reports diffs; leave settles", async () => {
  const r = await run(async (lib, url) => {
    const a = new lib.SignalroomClient(url);
    const b = new lib.SignalroomClient(url);
    t.a = a; t.b = b;
    const events = [];
    a.onPeers((e) => events.push(e));
    const ja = await a.join("api-room", "peer-a", "Alice");
    const seen = new Promise((res) => a.onPeers((e) => e.added.some((p) => p.peer_id === "peer-b") && res()));
    const jb = await b.join("api-room", "peer-b", "Bob");
    await seen;
    const gone = new Promise((res) => a.onPeers((e) => e.removed.some((p) => p.peer_id === "peer-b") && res()));
    const left = await b.leave();
    await gone;
    return { ja, jb, events, peersA: a.peers, room: a.roomName, id: a.peerId, left, bRoom: b.roomName };
  });
  assert.equal(r.ja.room_name, "api-room");
  assert.equal(r.ja.peer_id, "peer-a");
  assert.deepEqual(r.ja.peers.map((p) => p.peer_id), ["peer-a"]);
  assert.equal(typeof r.ja.max_peers, "number");
  assert.deepEqual(r.jb.peers.map((p) => p.username), ["Alice", "Bob"]);
  assert.equal(r.jb.version, r.ja.version + 1);
  // a's events: its own join (itself added), Bob added, Bob removed; versions grow.
  assert.deepEqual(r.events.map((e) => [e.added.map((p) => p.peer_id), e.removed.map((p) => p.peer_id)]), [
    [["peer-a"], []],
    [["peer-b"], []],
    [[], ["peer-b"]],
  ]);
  assert.deepEqual(r.events.map((e) => e.total_peers), [1, 2, 1]);
  assert.ok(r.events[1].version < r.events[2].version);
  assert.ok(r.events.every((e) => e.room_name === "api-room"));
  assert.deepEqual(r.peersA.map((p) => p.peer_id), ["peer-a"]);
  assert.equal(r.room, "api-room");
  assert.equal(r.id, "peer-a");
  assert.equal(r.left, undefined);
  assert.equal(r.bRoom, undefined);
});

test("join errors reject with {error, code}; leave outside a room rejects", async () => {
  const r = await run(async (lib, url) => {
    const c = new lib.SignalroomClient(url);
    const catchIt = (p) => p.then(() => null, (e) => e);
    const missing = await catchIt(c.join("api-room", "  ", "Carl"));
    const taken = await catchIt(c.join("api-room", "peer-a", "Impostor"));
    const notString = await catchIt(c.join("api-room", 42, "Carl"));
    const notIn = await catchIt(c.leave());
    c.close();
    return { missing, taken, notString, notIn };
  });
  assert.equal(r.missing.code, "missing_fields");
  assert.equal(r.missing.error, "Missing required fields: room_name, peer_id, username");
  assert.equal(r.taken.code, "peer_id_taken");
  assert.equal(r.taken.error, "Peer ID peer-a is already in room api-room");
  assert.equal(r.notString.code, "invalid_field");
  assert.deepEqual({ error: r.notIn.error, code: r.notIn.code }, { error: "Not in any room", code: "not_in_room" });
});

test("concurrent calls each settle from their own ack", async () => {
  const r = await run(async (lib, url) => {
    const c = new lib.SignalroomClient(url);
    const [one, two, bad] = await Promise.allSettled([
      c.join("conc-1", "peer-c", "Cleo"),
      c.join("conc-2", "peer-c", "Cleo"),
      c.join("", "peer-c", "Cleo"),
    ]);
    const room = c.roomName;
    const [left, again] = await Promise.allSettled([c.leave(), c.leave()]);
    c.close();
    return { one: one.value?.room_name, two: two.value?.room_name, bad: bad.reason?.code, room,
             left: left.status, again: again.reason?.code };
  });
  assert.deepEqual(r, { one: "conc-1", two: "conc-2", bad: "missing_fields", room: "conc-2",
                        left: "fulfilled", again: "not_in_room" });
});

test("signal reaches onSignal; signals before any onSignal are held; errors go to onError", async () => {
  const r = await run(async (lib, url) => {
    const s = new lib.SignalroomClient(url);
    const d = new lib.SignalroomClient(url);
    await s.join("signal-room", "peer-s", "Sam");
    await d.join("signal-room", "peer-d", "Dora");
    // The server handles s's events in order, and d receives them in that order: once
    // d sees s leave, both signals reached d, which had no onSignal yet.
    const sLeft = new Promise((res) => d.onPeers((e) => e.removed.length && res()));
    s.signal("peer-d", { n: 1, text: "early" });
    s.signal("peer-d", { n: 2, nested: { ok: [true] } });
    await s.leave();
    await sLeft;
    const got = [];
    d.onSignal((from, data) => got.push([from, data]));
    const held = got.slice();
    // Now a live one, both ways.
    await s.join("signal-room", "peer-s", "Sam");
    const third = new Promise((res) => d.onSignal((from, data) => data.n === 3 && res()));
    const back = new Promise((res) => s.onSignal((from, data) => res([from, data])));
    s.signal("peer-d", { n: 3 });
    await third;
    d.signal("peer-s", "pong");
    const echo = await back;
    const error = new Promise((res) => s.onError(res));
    s.signal("nobody", { n: 4 });
    const err = await error;
    s.close();
    d.close();
    return { held, got, echo, err };
  });
  assert.deepEqual(r.held, [["peer-s", { n: 1, text: "early" }], ["peer-s", { n: 2, nested: { ok: [true] } }]]);
  assert.deepEqual(r.got.map(([from, data]) => [from, data.n]), [["peer-s", 1], ["peer-s", 2], ["peer-s", 3]]);
  assert.deepEqual(r.echo, ["peer-d", "pong"]);
  assert.equal(r.err.code, "peer_not_found");
});

test("PeerMesh: one connection per peer, data channels, send/broadcast/connectedPeers", async () => {
  const pages = [page, await openPage(browser, server.url + "/api.html"), await openPage(browser, server.url + "/api.html")];
  // Each page: a client, a mesh made before join (its early offers must not be lost),
  // and a record of what arrives. Mesh signals must never reach onSignal.
  await Promise.all(pages.map((p, i) => run(async (lib, url, i) => {
    const c = new lib.SignalroomClient(url);
    const m = new lib.PeerMesh(c);
    t.mesh = { c, m, got: [], appSignals: [], states: [], tracks: [] };
    c.onSignal((from, data) => t.mesh.appSignals.push(data));
    m.onState((peer, state) => t.mesh.states.push([peer, state]));
    m.onChannel((peer, ch) => ch.addEventListener("message", (e) => t.mesh.got.push([peer, e.data])));
    m.onTrack((peer, ev) => t.mesh.tracks.push([peer, ev.track.kind]));
    // mesh-2 waits for the others' first offers, yet has a camera before it joins:
    // its tracks go out in a renegotiation after the first offer.
    if (i === 2) m.addStream(await navigator.mediaDevices.getUserMedia({ video: true }));
    await c.join("mesh-room", `mesh-${i}`, `M${i}`);
  }, i, p)));
  for (const p of pages) await p.waitForFunction(() => t.mesh.m.connectedPeers().length === 2);

  const sent = await run(() => ({
    one: t.mesh.m.send("mesh-1", "to one"),
    nobody: t.mesh.m.send("mesh-9", "to nobody"),
    all: t.mesh.m.broadcast("to all"),
    peers: t.mesh.m.connectedPeers().sort(),
  }));
  assert.deepEqual(sent, { one: true, nobody: false, all: 2, peers: ["mesh-1", "mesh-2"] });
  await pages[1].waitForFunction(() => t.mesh.got.length === 2);
  await pages[2].waitForFunction(() => t.mesh.got.length === 1);
  assert.deepEqual(await run(() => t.mesh.got, null, pages[1]), [["mesh-0", "to one"], ["mesh-0", "to all"]]);
  assert.deepEqual(await run(() => t.mesh.got, null, pages[2]), [["mesh-0", "to all"]]);
  for (const p of pages) {
    assert.deepEqual(await run(() => t.mesh.appSignals, null, p), [], "mesh signals stay out of onSignal");
    assert.ok((await run(() => t.mesh.states, null, p)).some(([, s]) => s === "connected"));
  }
  for (const p of pages.slice(0, 2)) {
    await p.waitForFunction(() => t.mesh.tracks.some(([peer, kind]) => peer === "mesh-2" && kind === "video"));
  }
  await shot(pages[1], "api-mesh");

  // A peer that leaves: its connection is closed on the others.
  await run(() => t.mesh.c.leave(), null, pages[2]);
  await pages[0].waitForFunction(() => t.mesh.m.connectedPeers().length === 1);
  assert.ok((await run(() => t.mesh.states)).some(([p, s]) => p === "mesh-2" && s === "closed"));
  await pages[1].close();
  await pages[2].close();
  await run(() => { t.mesh.m.close(); t.mesh.c.close(); });
});

test("PeerMesh: after a server restart the peers connect again", async () => {
  const pages = [await openPage(browser, server.url + "/api.html"), await openPage(browser, server.url + "/api.html")];
  await Promise.all(pages.map((p, i) => run(async (lib, url, i) => {
    const c = new lib.SignalroomClient(url);
    const m = new lib.PeerMesh(c);
    t.mesh = { c, m, got: [], rejoined: false };
    m.onChannel((peer, ch) => ch.addEventListener("message", (e) => t.mesh.got.push(e.data)));
    await c.join("mesh-restart", `mr-${i}`, `R${i}`);
    c.onConnectionChange((s) => s === "connected" && c.onPeers(() => { t.mesh.rejoined = true; }));
  }, i, p)));
  for (const p of pages) await p.waitForFunction(() => t.mesh.m.connectedPeers().length === 1);
  await server.stop("SIGTERM");
  server = await startServer(dir, server.port);
  for (const p of pages) {
    await p.waitForFunction(() => t.mesh.rejoined && t.mesh.c.peers.length === 2, null, { timeout: 30_000 });
  }
  // Whichever connections the rejoins tore down, both sides end with one open channel.
  for (const [i, p] of pages.entries()) {
    await p.waitForFunction((other) => t.mesh.m.send(other, "after restart"), `mr-${1 - i}`, { timeout: 30_000 });
  }
  for (const p of pages) await p.waitForFunction(() => t.mesh.got.includes("after restart"));
  for (const p of pages) await p.close();
});

test("autoRejoin: after a server restart the client is back in its room with its peer_id", async () => {
  await run(async (lib, url) => {
    t.r1 = new lib.SignalroomClient(url);
    t.r2 = new lib.SignalroomClient(url);
    t.r2States = [];
    t.r2.onConnectionChange((s) => t.r2States.push(s));
    await t.r1.join("rejoin-room", "r-1", "One");
    await t.r2.join("rejoin-room", "r-2", "Two");
    // Every list event from here on comes from the rejoins after the restart.
    t.rejoins = [new Set(), new Set()];
    t.r1.onPeers((e) => t.rejoins[0].add(e.version));
    t.r2.onPeers((e) => t.rejoins[1].add(e.version));
  });
  await server.stop("SIGTERM");
  await page.waitForFunction(() => t.r2States.includes("disconnected"));
  server = await startServer(dir, server.port);
  // Both rejoin by themselves; the server's REST view agrees.
  await page.waitForFunction(
    () => t.rejoins.every((v) => v.size > 0) && [t.r1, t.r2].every((c) => c.peers.length === 2),
    null,
    { timeout: 30_000 },
  );
  assert.ok(await run(() => [t.r1, t.r2].every((c) => c.roomName === "rejoin-room")));
  const room = await (await fetch(`${server.url}/api/webrtc/rooms/rejoin-room`)).json();
  assert.deepEqual(room.peers?.map((p) => p.peer_id).sort(), ["r-1", "r-2"], JSON.stringify(room));
  const r = await run(() => ({ id: t.r1.peerId, states: t.r2States }));
  assert.equal(r.id, "r-1");
  assert.deepEqual(r.states.slice(-1), ["connected"]);

  // close(): the client leaves; the other one sees it go.
  await run(() => { t.r1.close(); });
  await page.waitForFunction(() => t.r2.peers.length === 1);
  await run(() => { t.r2.close(); });
});

test("autoRejoin retries with backoff while its peer_id is still held", async () => {
  await run(async (lib, url) => {
    t.h = new lib.SignalroomClient(url);
    await t.h.join("hold-room", "h-1", "Holder");
    t.hRejoined = false;
    t.h.onPeers(() => { t.hRejoined = true; });
  });
  await server.stop("SIGTERM");
  server = await startServer(dir, server.port);
  // Another connection takes h-1 before the client's first rejoin (socket.io-client
  // waits at least half a second before reconnecting), as a dead connection that the
  // server has not noticed yet would.
  const took = await run(async (lib, url) => {
    t.squatter = new lib.SignalroomClient(url, { autoRejoin: false });
    return t.squatter.join("hold-room", "h-1", "Squatter").then(() => true, (e) => e);
  });
  assert.equal(took, true, "the squatter must join before the client's rejoin");
  const refusals = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    return Number(/signalroom_errors_total\{code="peer_id_taken"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  // Poll the server's counter: the client's rejoin has been refused at least once.
  while ((await refusals()) < 1) await new Promise((r) => setTimeout(r, 50));
  await run(() => t.squatter.leave());
  await page.waitForFunction(() => t.hRejoined && t.h.peers.length === 1, null, { timeout: 30_000 });
  const room = await (await fetch(`${server.url}/api/webrtc/rooms/hold-room`)).json();
  assert.deepEqual(room.peers.map((p) => p.username), ["Holder"]);
  await run(() => { t.h.close(); t.squatter.close(); });
});
