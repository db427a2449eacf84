// Shared setup of the browser tests: the real server on a loopback port, serving a
// directory that holds the demo (www/) and the npm package as an app would install it,
// and Debian's Chromium driven by playwright-core.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readdirSync, symlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const artifacts = join(repo, "tests/artifacts");
mkdirSync(artifacts, { recursive: true });

/** A directory to serve: www/'s files, the API test page, and node_modules/ with the package. */
export function siteDir() {
  const dir = mkdtempSync(join(tmpdir(), "signalroom-site-"));
  for (const name of readdirSync(join(repo, "www"))) symlinkSync(join(repo, "www", name), join(dir, name));
  symlinkSync(join(repo, "tests/browser/pages/api.html"), join(dir, "api.html"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(join(repo, "web-client/pkg"), join(dir, "node_modules/signalroom-client"));
  symlinkSync(join(repo, "tests/node_modules/socket.io-client"), join(dir, "node_modules/socket.io-client"));
  return dir;
}

/**
 * Starts `signalroom` on 127.0.0.1 (`port` 0: any free one) serving `www`, with extra `flags`;
 * resolves with `{ url, port, kill(signal), stop() }` once it prints its listening line.
 */
export function startServer(www, port = 0, flags = []) {
  const bin = process.env.SIGNALROOM_BIN ?? join(repo, "target/release/signalroom");
  const child = spawn(bin, ["--host", "127.0.0.1", "--port", String(port), "--www-dir", www, ...flags], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolvePromise, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`signalroom exited with ${code} before listening`)));
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const m = /^signalroom listening on (http:\/\/\S+)/.exec(line);
      if (!m) return;
      const url = m[1];
      resolvePromise({
        url,
        port: Number(new URL(url).port),
        /** Sends `signal` without waiting for an exit (SIGSTOP / SIGCONT freeze and thaw it). */
        kill: (signal) => child.kill(signal),
        stop: (signal = "SIGTERM") =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once("exit", () => done());
            child.kill(signal);
          }),
      });
    });
  });
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--allow-loopback-in-peer-connection", "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });
}

/** A new page (own context: own storage; `contextOptions` e.g. a phone's viewport) that reports its console errors to the test log. */
export async function openPage(browser, url, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") console.error(`[console] ${m.text()}`); });
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}
