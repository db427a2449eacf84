// signalroom-client across disconnects and reconnects, against the real server (stopped,
// restarted or frozen with SIGSTOP): what join() and leave() do while disconnected, what a
// request pending at a disconnect gets, the room's state when a rejoin cannot happen, and
// a PeerMesh replaced by a new one (web-client/README.md, "Disconnects").

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { siteDir, startServer, launch, openPage, cleanup } from "./helpers.mjs";

// Short pings, so that a frozen server is noticed in about two seconds.
const FLAGS = ["--ping-interval", "1", "--ping-timeout", "1"];
let dir, server, browser, page;

before(async () => {
  dir = siteDir();
  server = await startServer(dir, 0, FLAGS);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
  // mk(name, options): a client recorded in t[name] (its connection states, list events
  // and errors). barrier(rec): a round trip on its connection (a signal the server refuses),
  // so everything the client sent before it has been answered.
  await run(() => {
    window.t = {};
    window.mk = (name, options) => {
      const rec = { c: new lib.SignalroomClient(url, options), states: [], events: [], errors: [] };
      rec.c.onConnectionChange((s) => rec.states.push(s));
      rec.c.onPeers((e) => rec.events.push(e));
      rec.c.onError((e) => rec.errors.push(e));
      t[name] = rec;
      return rec;
    };
    window.barrier = (rec) =>
      new Promise((res) => {
        rec.c.onError((e) => ["peer_not_found", "not_in_room"].includes(e.code) && res());
        rec.c.signal("no-such-peer", 0);
      });
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

/** Runs `fn(arg)` in the page, where `lib`, `url`, `t`, `mk` and `barrier` exist. */
function run(fn, arg) {
  return page.evaluate(({ src, url, arg }) => {
    window.url = url;
    // eslint-disable-next-line no-new-func
    return new Function("arg", `return (${src})(arg);`)(arg);
  }, { src: fn.toString(), url: server.url, arg });
}

const lastState = (name, state) =>
  page.waitForFunction(([n, s]) => t[n].states.at(-1) === s, [name, state], { timeout: 30_000 });

/** Stops the server and waits until client `name` has seen the connection go. */
async function down(name) {
  await server.stop("SIGTERM");
  await lastState(name, "disconnected");
}

/** Starts the server again on its port and waits until client `name` is connected. */
async function up(name, flags = FLAGS) {
  server = await startServer(dir, server.port, flags);
  await lastState(name, "connected");
}

async function room(name) {
  const res = await fetch(`${server.url}/api/webrtc/rooms/${name}`);
  return res.status === 404 ? [] : (await res.json()).peers.map((p) => p.peer_id);
}

test("leave() while disconnected resolves at once, and the client does not rejoin", async () => {
  await run(() => mk("c1").c.join("c1-room", "c1", "One"));
  await down("c1");
  const r = await run(async () => {
    const { c, events, errors } = t.c1;
    c.signal("anyone", "while down");
    const left = await c.leave().then(() => "resolved", (e) => e.code);
    return { left, room: c.roomName, peers: c.peers.length, removed: events.at(-1).removed.map((p) => p.peer_id),
             signalError: errors.at(-1)?.code };
  });
  assert.deepEqual(r, { left: "resolved", room: undefined, peers: 0, removed: ["c1"], signalError: "disconnected" });
  await up("c1");
  await run(() => barrier(t.c1));
  assert.equal(await run(() => t.c1.c.roomName), undefined);
  assert.deepEqual(await room("c1-room"), [], "no rejoin reached the server");
  await run(() => t.c1.c.close());
});

test("join(B) while disconnected: the client ends in B, and so does the server", async () => {
  await run(() => mk("c2").c.join("c2-a", "c2", "Two"));
  await down("c2");
  await run(() => {
    t.c2.answer = t.c2.c.join("c2-b", "c2", "Two").then((a) => a.room_name, (e) => e.code);
  });
  await up("c2");
  const r = await run(async () => {
    const answer = await t.c2.answer;
    await barrier(t.c2);
    return { answer, room: t.c2.c.roomName, peers: t.c2.c.peers.map((p) => p.peer_id) };
  });
  assert.deepEqual(r, { answer: "c2-b", room: "c2-b", peers: ["c2"] });
  assert.deepEqual(await room("c2-b"), ["c2"]);
  assert.deepEqual(await room("c2-a"), []);
  await run(() => t.c2.c.close());
});

test("autoRejoin: false: a disconnect empties the room's state, and leave() says not_in_room", async () => {
  await run(() => mk("c3", { autoRejoin: false }).c.join("c3-room", "c3", "Three"));
  await down("c3");
  const r = await run(async () => {
    const { c, events } = t.c3;
    const left = await c.leave().then(() => "resolved", (e) => e.code);
    return { room: c.roomName, id: c.peerId, peers: c.peers.length, removed: events.at(-1).removed.map((p) => p.peer_id), left };
  });
  assert.deepEqual(r, { room: undefined, id: undefined, peers: 0, removed: ["c3"], left: "not_in_room" });
  await up("c3");
  await run(() => barrier(t.c3));
  assert.deepEqual(await room("c3-room"), []);
  await run(() => t.c3.c.close());
});

test("requests pending at a disconnect: join rejects with `disconnected`, leave resolves, no rejoin", async () => {
  await run(() => mk("p").c.join("pend-a", "p1", "Pending"));
  server.kill("SIGSTOP");
  try {
    await run(() => {
      t.p.join = t.p.c.join("pend-b", "p1", "Pending").then(() => "resolved", (e) => ({ code: e.code, error: e.error }));
      t.p.leave = t.p.c.leave().then(() => "resolved", (e) => e.code);
    });
    // The client notices the frozen server by its missing pings.
    await lastState("p", "disconnected");
    const r = await run(async () => ({ join: await t.p.join, leave: await t.p.leave, room: t.p.c.roomName }));
    assert.deepEqual(r, {
      join: { code: "disconnected", error: "The connection to the server was lost before it answered" },
      leave: "resolved",
      room: undefined,
    });
  } finally {
    server.kill("SIGCONT");
  }
  await lastState("p", "connected");
  await run(() => barrier(t.p));
  assert.equal(await run(() => t.p.c.roomName), undefined, "the pending leave is not undone");
  // The old connection's membership goes when the thawed server handles its leave or
  // notices it closed; the new connection never joined.
  for (let i = 0; (await room("pend-a")).length; i++) {
    assert.ok(i < 200, "the old connection's membership is gone within 10 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(await room("pend-b"), []);
  await run(() => t.p.c.close());
});

test("a closed PeerMesh hands the client's mesh signals to the next one", async () => {
  await run(async () => {
    const a = new lib.SignalroomClient(url);
    const b = new lib.SignalroomClient(url);
    const first = new lib.PeerMesh(a);
    first.close();
    const second = new lib.PeerMesh(a);
    const other = new lib.PeerMesh(b);
    t.c4 = { a, b, first, second, other };
    await a.join("c4-room", "c4-a", "A");
    await b.join("c4-room", "c4-b", "B");
  });
  // c4-a makes the offer from `second`; the answer and candidates must reach it.
  await page.waitForFunction(
    () => t.c4.second.connectedPeers().length === 1 && t.c4.other.connectedPeers().length === 1,
    null,
    { timeout: 30_000 },
  );
  assert.deepEqual(await run(() => t.c4.first.connectedPeers()), []);
  await run(() => { for (const x of ["second", "other"]) t.c4[x].close(); t.c4.a.close(); t.c4.b.close(); });
});

test("a rejoin refused for good empties the room's state and is reported", async () => {
  await run(() => mk("f").c.join("full-room", "f1", "First"));
  await server.stop("SIGTERM");
  await lastState("f", "disconnected");
  // Back with one place per room, taken before the client's rejoin (socket.io-client
  // waits at least half a second before it reconnects).
  server = await startServer(dir, server.port, [...FLAGS, "--max-peers", "1"]);
  const took = await run(() => {
    t.squatter = new lib.SignalroomClient(url, { autoRejoin: false });
    return t.squatter.join("full-room", "f2", "Squatter").then(() => true, (e) => e.code);
  });
  assert.equal(took, true, "the squatter must join before the client's rejoin");
  await page.waitForFunction(() => t.f.errors.some((e) => e.code === "room_full"), null, { timeout: 30_000 });
  const r = await run(() => ({
    room: t.f.c.roomName,
    peers: t.f.c.peers.length,
    removed: t.f.events.at(-1).removed.map((p) => p.peer_id),
  }));
  assert.deepEqual(r, { room: undefined, peers: 0, removed: ["f1"] });
  assert.deepEqual(await room("full-room"), ["f2"]);
  await run(() => { t.f.c.close(); t.squatter.close(); });
});
