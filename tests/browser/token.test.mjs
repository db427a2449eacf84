// The client's `token` option against a server run with --auth-secret (web-client/README.md,
// docs/protocol.md "Access tokens"): a string token, a function (returning a promise) called
// before every (re)connect so a refreshed token is used after a server restart, a refused
// token reported as onError {code: "unauthorized"} with no reconnect loop until join() is
// called again; and the demo page's ?token= and its "this server needs a token".

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repo, siteDir, startServer, launch, openPage, shot, cleanup } from "./helpers.mjs";
import { sign, nowSecs } from "../lib/jwt.mjs";

const SECRET = "browser-test-secret";
const flags = ["--auth-secret", SECRET];
let dir, server, browser, page;

before(async () => {
  dir = siteDir();
  server = await startServer(dir, 0, flags);
  browser = await launch();
  page = await openPage(browser, server.url + "/api.html");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

const run = (fn, arg, p = page) =>
  p.evaluate(({ src, url, arg }) => {
    window.t ??= {};
    // eslint-disable-next-line no-new-func
    return new Function("lib", "url", "arg", `return (${src})(lib, url, arg);`)(window.lib, url, arg);
  }, { src: fn.toString(), url: server.url, arg });

const metric = async (code) => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(new RegExp(`signalroom_errors_total\\{code="${code}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
};

test("the .d.ts and the package README describe the token option", () => {
  const dts = readFileSync(join(repo, "web-client/pkg/signalroom_client.d.ts"), "utf8");
  assert.ok(dts.includes("token?: string | (() => string | Promise<string>)"), "token in ClientOptions");
  assert.match(readFileSync(join(repo, "web-client/pkg/README.md"), "utf8"), /`token`/);
});

test("a string token connects and joins", async () => {
  const r = await run(async (lib, url, token) => {
    const c = new lib.SignalroomClient(url, { token });
    const joined = await c.join("tok-room", "tok-1", "One");
    c.close();
    return joined.peers.map((p) => p.peer_id);
  }, sign(SECRET, { room: "tok-room" }));
  assert.deepEqual(r, ["tok-1"]);
});

test("a refused token: onError unauthorized, join rejects, no reconnecting until join() again", async () => {
  const refusedBefore = await metric("unauthorized");
  await run(async (lib, url, tokens) => {
    t.calls = 0;
    t.errors = [];
    t.bad = new lib.SignalroomClient(url, { token: () => tokens[t.calls++] });
    t.bad.onError((e) => t.errors.push(e));
    t.firstJoin = await t.bad.join("tok-bad", "b-1", "B").then(() => "joined", (e) => e);
  }, [sign(`${SECRET}-wrong`), sign(SECRET, { room: "tok-bad" })]);
  const first = await run(() => ({ calls: t.calls, errors: t.errors, join: t.firstJoin }));
  assert.equal(first.calls, 1);
  assert.equal(first.errors.length, 1);
  assert.equal(first.errors[0].code, "unauthorized");
  assert.equal(first.join.code, "unauthorized");
  // socket.io-client's reconnection delay is 1-5 s: in 6 s a loop would have called the token
  // function and reached the server again. (Absence is only shown by waiting.)
  await new Promise((r) => setTimeout(r, 6000));
  assert.equal(await run(() => t.calls), 1, "no reconnect after a refused token");
  assert.equal(await metric("unauthorized"), refusedBefore + 1, "the server saw one attempt");
  // join() again: the function is called anew, its good token is used, the join succeeds.
  const again = await run(async () => {
    const j = await t.bad.join("tok-bad", "b-1", "B");
    return { calls: t.calls, peers: j.peers.map((p) => p.peer_id) };
  });
  assert.deepEqual(again, { calls: 2, peers: ["b-1"] });
  await run(() => t.bad.close());
});

test("a token function (async) is called before every reconnect: a refreshed token after a restart", async () => {
  // The first token expires in 3 s; after the restart only a fresh one would be accepted.
  const tokens = [sign(SECRET, { exp: nowSecs() + 3 }), sign(SECRET), sign(SECRET), sign(SECRET)];
  await run(async (lib, url, tokens) => {
    t.fnCalls = 0;
    t.fnErrors = [];
    t.fresh = new lib.SignalroomClient(url, {
      token: () => new Promise((resolve) => setTimeout(() => resolve(tokens[Math.min(t.fnCalls++, tokens.length - 1)]), 10)),
    });
    t.fresh.onError((e) => t.fnErrors.push(e));
    t.freshStates = [];
    t.fresh.onConnectionChange((s) => t.freshStates.push(s));
    await t.fresh.join("tok-refresh", "f-1", "F");
  }, tokens);
  assert.equal(await run(() => t.fnCalls), 1);
  await server.stop("SIGTERM");
  await page.waitForFunction(() => t.freshStates.includes("disconnected"));
  // Let the first token expire while the server is down.
  await new Promise((r) => setTimeout(r, Math.max(0, (nowSecs() + 4) * 1000 - Date.now())));
  server = await startServer(dir, server.port, flags);
  await page.waitForFunction(() => t.fresh.peers.length === 1 && t.freshStates.at(-1) === "connected", null, { timeout: 30_000 });
  const r = await run(() => ({ calls: t.fnCalls, errors: t.fnErrors }));
  assert.ok(r.calls >= 2, `the token function was called again (${r.calls})`);
  assert.deepEqual(r.errors, []);
  const room = await (await fetch(`${server.url}/api/webrtc/rooms/tok-refresh`, { headers: { authorization: `Bearer ${sign(SECRET)}` } })).json();
  assert.deepEqual(room.peers?.map((p) => p.peer_id), ["f-1"], JSON.stringify(room));
  await run(() => t.fresh.close());
});

test("the demo page reads ?token= and says clearly when the server needs one", async () => {
  const refused = await openPage(browser, `${server.url}/`);
  await refused.waitForFunction(() => document.getElementById("connection").textContent === "this server needs a token");
  assert.match(await refused.textContent("#error"), /needs a token/);
  await shot(refused, "token-1-refused");
  await refused.context().close();

  const ok = await openPage(browser, `${server.url}/?token=${encodeURIComponent(sign(SECRET))}`);
  await ok.waitForFunction(() => document.getElementById("connection").dataset.state === "connected");
  await ok.getByLabel("Room", { exact: true }).fill("tok-demo");
  await ok.getByLabel("Your name").fill("Dee");
  await ok.getByRole("button", { name: "Join", exact: true }).click();
  await ok.waitForFunction(() => document.body.dataset.joined === "true");
  await ok.waitForFunction(() => /tok-demo/.test(document.getElementById("rooms").textContent));
  await shot(ok, "token-2-joined");
  await ok.context().close();
});
