// A flooding client, in its own process so that its send loop does not slow the test's
// measurements: opens a WebSocket to argv[2], connects to Socket.IO, joins a room, then
// sends get_peers events as fast as the socket takes them until the server cuts it off
// (or 20 s pass). Prints `flooding` when its first event goes out, then one JSON line:
// {sent, cutOffMs}.
//
// It speaks WebSocket over a raw TCP socket (the few frames it needs), not through the
// `ws` package: a server that closes the connection under a flood resets it, and `ws`,
// which pauses its socket while it works through a backlog of incoming frames, then
// sometimes never reads again and never reports the close (about one run in six). Here the
// cut-off is the TCP connection's end or reset, seen as soon as it happens.
import net from 'node:net';
import crypto from 'node:crypto';

const LIMIT_MS = 20_000;
const target = new URL(process.argv[2]);
const sock = net.connect({ host: target.hostname, port: Number(target.port) });
let sent = 0;
let start = 0;
let finished = false;
const done = (cutOffMs) => {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ sent, cutOffMs }));
  process.exit(0);
};
const cutOff = () => done(start ? Date.now() - start : 0);
sock.on('close', cutOff);
sock.on('end', cutOff);
sock.on('error', cutOff);

// A masked client text frame (a zero mask leaves the payload as it is).
const frame = (text) => {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
};
const EVENT = frame('42["get_peers",{}]');

const burst = () => {
  if (finished) return;
  if (Date.now() - start > LIMIT_MS) done(null);
  // Keep the socket's buffer topped up without letting it grow without bound.
  while (sock.writableLength < 1 << 20 && !finished) {
    sock.write(EVENT);
    sent += 1;
    if (sent % 4096 === 0 && Date.now() - start > LIMIT_MS) break;
  }
  setImmediate(burst);
};

// Server frames: unmasked, text or close; only the Engine.IO/Socket.IO packets that
// matter here are looked at.
let input = Buffer.alloc(0);
let upgraded = false;
const onPacket = (text) => {
  if (text.startsWith('0{')) sock.write(frame('40'));
  else if (text === '2') sock.write(frame('3'));
  else if (text.startsWith('40') && !start) {
    sock.write(frame(`42${JSON.stringify(['join_room', { room_name: 'flood', peer_id: 'flooder', username: 'F' }])}`));
    start = Date.now();
    console.log('flooding');
    burst();
  }
};
sock.on('data', (chunk) => {
  input = Buffer.concat([input, chunk]);
  if (!upgraded) {
    const end = input.indexOf('\r\n\r\n');
    if (end < 0) return;
    if (!input.subarray(0, 12).toString().includes('101')) return cutOff();
    upgraded = true;
    input = input.subarray(end + 4);
  }
  for (;;) {
    if (input.length < 2) return;
    const op = input[0] & 0x0f;
    let len = input[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (input.length < 4) return;
      len = input.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (input.length < 10) return;
      len = Number(input.readBigUInt64BE(2));
      at = 10;
    }
    if (input.length < at + len) return;
    const payload = input.subarray(at, at + len);
    input = input.subarray(at + len);
    if (op === 0x8) return cutOff();
    if (op === 0x1) onPacket(payload.toString());
  }
});
sock.on('connect', () => {
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${target.host}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
});
