// The demo page on a cluster, as README's "Running several nodes" tells a person to try it:
// a private Redis and two nodes serving the demo; one tab on each node joins the same room
// through the form; both list each other, connect peer to peer and chat; then one node
// stops and its peer leaves the other tab's list.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { siteDir, startServer, launch, openPage, shot, cleanup } from "./helpers.mjs";
import { startRedis } from "../lib/redis.mjs";

let dir, redis, nodes, browser;

before(async () => {
  dir = siteDir();
  redis = await startRedis();
  nodes = await Promise.all(
    ["n1", "n2"].map((id) => startServer(dir, 0, ["--redis-url", redis.url, "--node-id", id])),
  );
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await Promise.all((nodes ?? []).map((n) => n.stop()));
  await redis?.stop();
  cleanup(dir);
});

/** Names listed on `page`, in list order. */
const names = (page) => page.$$eval("#peers li .name", (els) => els.map((el) => el.textContent));

async function join(page, room, name) {
  await page.getByLabel("Room", { exact: true }).fill(room);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.waitForFunction(() => document.body.dataset.joined === "true");
}

test("a tab on each node: one room, a peer-to-peer chat, and a stopped node's peer leaves", async () => {
  const [alice, bob] = await Promise.all(nodes.map((n) => openPage(browser, n.url + "/")));
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById("connection").dataset.state === "connected");
  }
  await join(alice, "across-nodes", "Alice");
  await join(bob, "across-nodes", "Bob");

  // Each tab lists both, and the other as connected over WebRTC.
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => {
      const lis = [...document.querySelectorAll("#peers li")];
      return lis.length === 2 && lis.every((li) => ["you", "connected"].includes(li.dataset.state));
    });
    assert.deepEqual(await names(page), ["Alice", "Bob"]);
  }

  // Both nodes' rooms overview (REST, read from Redis) shows the room with two peers.
  for (const page of [alice, bob]) {
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.waitForFunction(() => document.getElementById("rooms").textContent.includes("2 of"));
  }

  // Chat over the data channel the two tabs set up through different nodes.
  await alice.getByLabel("Message", { exact: true }).fill("hello from node 1");
  await alice.getByRole("button", { name: "Send", exact: true }).click();
  await bob.waitForFunction(() => document.getElementById("chat-log").textContent.includes("hello from node 1"));
  await bob.getByLabel("Message", { exact: true }).fill("hi from node 2");
  await bob.getByRole("button", { name: "Send", exact: true }).click();
  await alice.waitForFunction(() => document.getElementById("chat-log").textContent.includes("hi from node 2"));
  await shot(alice, "cluster-demo-1-chat");

  // Bob's node stops: Bob leaves Alice's list (the contract allows 10 s; the wait is 15 s).
  await nodes[1].stop();
  await alice.waitForFunction(() => document.querySelectorAll("#peers li").length === 1, null, { timeout: 15000 });
  assert.deepEqual(await names(alice), ["Alice"]);
  await shot(alice, "cluster-demo-2-node-stopped");
});
