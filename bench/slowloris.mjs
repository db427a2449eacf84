// Slowloris measurement for docs/reliability.md: opens N TCP connections to a running
// signalroom (half idle, half with a partial request line) and reports when the server
// closed them. Usage: node bench/slowloris.mjs PORT [N]. Bounded: gives up after 30 s.
import net from 'node:net';
const port = Number(process.argv[2]); const N = Number(process.argv[3] || 3000);
const t0 = Date.now(); let closed = 0; const times = [];
for (let i = 0; i < N; i++) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.on('connect', () => { if (i % 2) s.write('GET / HTTP/1.1\r\nHost: x\r\n'); });
  s.on('close', () => { closed++; times.push(Date.now() - t0); });
}
const timer = setInterval(() => {
  if (closed === N || Date.now() - t0 > 30000) {
    clearInterval(timer);
    times.sort((a, b) => a - b);
    console.log(JSON.stringify({ N, closed, first_ms: times[0], median_ms: times[times.length >> 1], last_ms: times[times.length - 1] }));
    process.exit(0);
  }
}, 100);
