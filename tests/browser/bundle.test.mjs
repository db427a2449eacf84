// The npm package through a bundler (esbuild), as an app built with one would use it:
// bare imports of `signalroom-client` and `socket.io-client` resolved from node_modules,
// one bundle, and no import map on the page.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { repo, startServer, launch, openPage, shot, cleanup } from "./helpers.mjs";

let dir, server, browser;

before(async () => {
  // An app folder: its source, and node_modules/ with the package as npm installs it.
  dir = mkdtempSync(join(tmpdir(), "signalroom-bundle-"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(join(repo, "web-client/pkg"), join(dir, "node_modules/signalroom-client"));
  writeFileSync(join(dir, "app.js"), `
    import init, { SignalroomClient, PeerMesh } from "signalroom-client";
    await init();
    window.lib = { SignalroomClient, PeerMesh };
    document.body.dataset.ready = "true";
  `);
  const site = join(dir, "site");
  mkdirSync(site);
  await build({
    entryPoints: [join(dir, "app.js")],
    bundle: true,
    format: "esm",
    target: "es2022",
    outfile: join(site, "app.js"),
    // socket.io-client is the package's dependency; here it lives in tests/node_modules.
    nodePaths: [join(repo, "tests/node_modules")],
    logLevel: "warning",
  });
  // The glue finds its .wasm next to the script (`new URL(..., import.meta.url)`).
  copyFileSync(join(repo, "web-client/pkg/signalroom_client_bg.wasm"), join(site, "signalroom_client_bg.wasm"));
  writeFileSync(join(site, "index.html"), `<!doctype html><html><head><meta charset="utf-8">
    <link rel="icon" href="data:,"><script type="module" src="app.js"></script></head>
    <body><h1>bundled</h1></body></html>`);
  server = await startServer(site);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  cleanup(dir);
});

test("a page bundled with esbuild joins a room and meets another peer", async () => {
  const pages = [await openPage(browser, server.url + "/"), await openPage(browser, server.url + "/")];
  assert.equal(await pages[0].evaluate(() => document.querySelector("script[type=importmap]")), null);
  const results = await Promise.all(pages.map((p, i) => p.evaluate(async ({ url, i }) => {
    const c = new window.lib.SignalroomClient(url);
    const m = new window.lib.PeerMesh(c);
    window.t = { c, m };
    return (await c.join("bundled", `b-${i}`, `B${i}`)).room_name;
  }, { url: server.url, i })));
  assert.deepEqual(results, ["bundled", "bundled"]);
  for (const p of pages) await p.waitForFunction(() => window.t.m.connectedPeers().length === 1);
  assert.equal(await pages[0].evaluate(() => window.t.m.send("b-1", "hi")), true);
  await shot(pages[0], "bundle");
});
