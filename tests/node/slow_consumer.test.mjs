// A recipient that stops reading (docs/protocol.md "Limits and configuration",
// --max-queued-packets): once its queue is full the server closes that connection, its
// room is told it left, and everyone else goes on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, RawSocket, metric } from '../lib/server.mjs';

let srv;
const clients = [];

before(async () => { srv = await startServer(['--max-queued-packets', '32', '--shutdown-timeout', '1']); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('a connection that stops reading is closed once its queue is full, and its room is told', async () => {
  const room = uniq('slow');
  const sender = await connect(srv.url);
  clients.push(sender);
  await sender.join(room, 'sender', 'Sender');

  const stuck = new RawSocket(srv.url);
  await stuck.handshake();
  stuck.emit('join_room', { room_name: room, peer_id: 'stuck', username: 'Stuck' });
  await stuck.frame((f) => f.startsWith('42["join_room_success"'));
  await sender.next('peer_list_updated', (d) => ids(d.peers).includes('stuck'));

  // The stuck client stops reading: first the kernel's buffers fill, then its queue.
  stuck.ws._socket.pause();
  let gone = false;
  const left = sender
    .next('peer_list_updated', (d) => !ids(d.peers).includes('stuck'), 60_000)
    .then((d) => { gone = true; return d; });
  const data = 'x'.repeat(60 * 1024);
  // Bounded: 1,000 signals of 60 KiB (60 MB) is far more than loopback buffers hold. Each
  // is acked once queued for its target; the one its full queue cannot take is refused.
  // Sixteen at a time, so that a loaded machine fills the buffers in few round trips; fewer
  // than the sender's own queue of 32, which holds the sixteen acks.
  let refused;
  for (let i = 0; i < 1000 && !gone && !refused; i += 16) {
    const batch = Array.from({ length: 16 }, () => sender.ack('signal', { to: 'stuck', data }));
    refused = (await Promise.all(batch)).find((a) => a.code);
  }
  assert.equal(refused?.code, 'peer_not_found', 'the signal the stuck client could not take is refused');
  const update = await left;
  assert.deepEqual(ids(update.peers), ['sender']);

  assert.ok(await metric(srv.url, 'signalroom_queue_full_total') >= 1, 'the full queue is counted');

  // The sender's own connection is unaffected.
  const answer = await sender.ack('get_peers', {});
  assert.deepEqual(ids(answer.peers), ['sender']);
  stuck.ws._socket.destroy();
});

test('SIGTERM still exits 0 when a client stopped reading (--shutdown-timeout)', async () => {
  const own = await startServer(['--shutdown-timeout', '1']);
  const room = uniq('slow-stop');
  const sender = await connect(own.url);
  clients.push(sender);
  await sender.join(room, 'sender', 'Sender');
  const stuck = new RawSocket(own.url);
  await stuck.handshake();
  stuck.emit('join_room', { room_name: room, peer_id: 'stuck', username: 'Stuck' });
  await stuck.frame((f) => f.startsWith('42["join_room_success"'));
  stuck.ws._socket.pause();
  // Fill the stuck connection's buffers: the signals are acked once queued for it.
  const data = 'x'.repeat(60 * 1024);
  for (let i = 0; i < 300; i++) sender.emit('signal', { to: 'stuck', data });
  await sender.barrier();
  // The harness SIGKILLs after 10 s; a clean exit within the grace period is code 0.
  const { code, signal } = await own.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
  stuck.ws._socket.destroy();
});
