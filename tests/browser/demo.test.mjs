// The demo page at `/`, used as a person would: three tabs join one room through
// the form, see each other, chat over WebRTC data channels, share a (fake) camera,
// and one tab closing disappears from the others.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { siteDir, startServer, launch, openPage, shot, cleanup } from "./helpers.mjs";

let dir, server, browser;

before(async () => {
  dir = siteDir();
  server = await startServer(dir);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

/** Peers listed on `page`: [{name, state}] in list order. */
const listed = (page) =>
  page.$$eval("#peers li", (lis) =>
    lis.map((li) => ({ name: li.querySelector(".name").textContent, state: li.dataset.state })));

async function join(page, room, name) {
  await page.getByLabel("Room", { exact: true }).fill(room);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.waitForFunction(() => document.body.dataset.joined === "true");
}

test("three tabs join, see each other, chat peer to peer, and a closed tab leaves", async () => {
  const names = ["Alice", "Bob", "Carol"];
  const pages = [];
  for (const name of names) {
    const page = await openPage(browser, server.url + "/");
    await page.waitForFunction(() => document.getElementById("connection").dataset.state === "connected");
    pages.push(page);
  }
  await shot(pages[0], "demo-1-before-join");

  for (const [i, page] of pages.entries()) await join(page, "demo-room", names[i]);

  // Everyone lists all three, and the other two as connected over WebRTC.
  for (const page of pages) {
    await page.waitForFunction(() => {
      const lis = [...document.querySelectorAll("#peers li")];
      return lis.length === 3 && lis.every((li) => ["you", "connected"].includes(li.dataset.state));
    });
    const peers = await listed(page);
    assert.deepEqual(peers.map((p) => p.name), names, "join order");
    assert.equal(peers.filter((p) => p.state === "you").length, 1);
  }
  await shot(pages[0], "demo-2-three-connected");

  // The rooms overview (REST) shows the room with three peers.
  await pages[0].getByRole("button", { name: "Refresh" }).click();
  await pages[0].waitForFunction(() => document.getElementById("rooms").textContent.includes("3 of"));

  // Chat: typed in one tab, arriving in the other two over data channels.
  await pages[0].getByLabel("Message", { exact: true }).fill("hello from Alice");
  await pages[0].getByRole("button", { name: "Send", exact: true }).click();
  await pages[2].getByLabel("Message", { exact: true }).fill("hi, Carol here");
  await pages[2].getByRole("button", { name: "Send", exact: true }).click();
  for (const page of pages) {
    await page.waitForFunction(() => {
      const log = document.getElementById("chat-log").textContent;
      return log.includes("hello from Alice") && log.includes("hi, Carol here");
    });
  }
  const bobLog = await pages[1].$$eval("#chat-log li", (lis) => lis.map((li) => li.textContent));
  assert.ok(bobLog.includes("Alice hello from Alice"), bobLog.join(" | "));
  assert.ok(bobLog.includes("Carol hi, Carol here"), bobLog.join(" | "));
  // Not through the server: the messages went over RTCDataChannels.
  assert.equal(await pages[1].evaluate(() => window.signalroom.mesh.connectedPeers().length), 2);
  await shot(pages[1], "demo-3-chat");

  // Camera: Alice shares her (fake) camera; Bob gets a playing video tile.
  await pages[0].getByRole("button", { name: "Share camera and microphone" }).click();
  await pages[1].waitForFunction(() => {
    const v = document.querySelector(".tile.remote video");
    return v && v.videoWidth > 0;
  });
  await shot(pages[1], "demo-4-camera");

  // Carol closes her tab: the others drop her from the list and close her connection.
  await pages[2].context().close();
  for (const page of pages.slice(0, 2)) {
    await page.waitForFunction(() => document.querySelectorAll("#peers li").length === 2);
    await page.waitForFunction(() => window.signalroom.mesh.connectedPeers().length === 1);
    assert.deepEqual((await listed(page)).map((p) => p.name), ["Alice", "Bob"]);
  }
  await shot(pages[0], "demo-5-after-close");
});

test("on a phone: no sideways scrolling, and a refused join is explained in words", async () => {
  const page = await openPage(browser, server.url + "/", {
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
  });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
  await page.getByLabel("Room", { exact: true }).fill("   "); // passes `required`, empty after trimming
  await page.getByLabel("Your name").fill("Dave");
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.waitForFunction(() => !document.getElementById("error").hidden);
  const text = await page.locator("#error").textContent();
  assert.equal(text, "Please fill in both the room and your name.");
  await shot(page, "demo-6-error");
  await page.context().close();
});
