// A flooding client, in its own process so that its send loop does not slow the test's
// measurements: connects over WebSocket to argv[2], joins a room, then sends get_peers
// events as fast as the socket takes them until the server cuts it off (or 20 s pass).
// Prints one JSON line: {sent, cutOffMs}.
import WebSocket from 'ws';

const url = process.argv[2].replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';
const ws = new WebSocket(url);
let sent = 0;
let start = 0;
let open = true;
const done = (cutOffMs) => {
  console.log(JSON.stringify({ sent, cutOffMs }));
  process.exit(0);
};
ws.on('message', (data) => {
  const text = String(data);
  if (text.startsWith('0{')) ws.send('40');
  else if (text === '2') ws.send('3');
  else if (text.startsWith('40')) {
    ws.send(`42${JSON.stringify(['join_room', { room_name: 'flood', peer_id: 'flooder', username: 'F' }])}`);
    start = Date.now();
    const burst = () => {
      if (!open) return;
      // Keep the socket's buffer topped up without letting it grow without bound.
      // A server that reads as fast as this sends keeps the buffer low: the bound on time
      // is checked inside the loop too, so the flooder always ends by itself.
      while (ws.bufferedAmount < 1 << 20 && open && (sent % 4096 !== 0 || Date.now() - start <= 20_000)) {
        ws.send('42["get_peers",{}]');
        sent += 1;
      }
      if (Date.now() - start > 20_000) done(null);
      setImmediate(burst);
    };
    burst();
  }
});
ws.on('close', () => { open = false; done(Date.now() - start); });
ws.on('error', () => {});
