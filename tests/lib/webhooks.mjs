// A webhook receiver for the tests: an HTTP server on 127.0.0.1 that records every
// delivery (attempts included) in arrival order and answers it with the status the test
// chooses, with promise helpers whose timeouts fail the test.

import http from 'node:http';
import { withTimeout, TIMEOUT_MS } from './server.mjs';

/**
 * Starts a receiver; `answer(delivery, attempt)` gives each delivery's status (null: never
 * answer). Returns {url, got, count(n), until(pred, what), close()}; each delivery in `got`
 * is {headers, raw, body}.
 */
export async function startReceiver(answer = () => 200) {
  const got = [];
  const waiters = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const d = { headers: req.headers, raw, body: JSON.parse(raw.toString('utf8')) };
      const attempt = got.filter((x) => x.body.id === d.body.id).length + 1;
      got.push(d);
      for (const w of [...waiters]) w();
      const status = answer(d, attempt);
      if (status !== null) { res.statusCode = status; res.end(); }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${srv.address().port}/hook`;
  /** Resolves with `got` once `done()` holds; fails after `ms`. */
  const once = (done, ms, what) => withTimeout(new Promise((resolve) => {
    const check = () => { if (done()) { waiters.splice(waiters.indexOf(check), 1); resolve(got); } };
    waiters.push(check);
    check();
  }), ms, what);
  /** Resolves once `n` deliveries (attempts) arrived. */
  const count = (n, ms = TIMEOUT_MS * 2) => once(() => got.length >= n, ms, `${n} webhook deliveries (got ${got.length})`);
  /** Resolves once a delivery matches `pred`. */
  const until = (pred, what) => once(() => got.some(pred), TIMEOUT_MS * 2, `webhook ${what}`);
  const close = () => { srv.closeAllConnections(); srv.close(); };
  return { url, got, count, until, close };
}
