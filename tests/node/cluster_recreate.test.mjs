// Cluster mode: a room whose members disconnect (so it is deleted) and which is then
// created again under the same name starts again at version 1, and every member hears it,
// also on a node that had members of the earlier room. Found by hand with
// `cargo xtask run --nodes 3`: the owner's batch for a change made before it heard of the
// last local member's disconnect reached that node after the node had stopped following
// the room, started a sequence at the old version, and held back the new room's updates
// (fixed in core/src/cluster/home.rs: a room no local socket is in or joining is not
// sequenced).
//
// Skipped unless SIGNALROOM_CLUSTER_BIN (the server binary for the nodes) is set.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { getJson, uniq, ids, withTimeout } from '../lib/server.mjs';
import { startCluster, CLUSTER_SKIP } from '../lib/cluster.mjs';

const skip = CLUSTER_SKIP;

let cluster;

before(async () => {
  if (!skip) cluster = await startCluster(2, []);
});

after(async () => { await cluster?.cleanup(); });

/** A client connected to node `i` (0, 1). */
const on = (i) => cluster.on(i);

/** Waits until no node lists `room` any more. */
async function gone(room) {
  await withTimeout((async () => {
    for (;;) {
      const r = await getJson(cluster.nodes[0].url, '/api/webrtc/rooms');
      if (r.status === 200 && !(room in r.body)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })(), 5000, `room ${room} to be deleted`);
}

test('a room emptied by disconnects and created again: members on both nodes hear its new versions', { skip }, async () => {
  const room = uniq('again');
  const [a, b] = await Promise.all([on(0), on(1)]);
  await a.join(room, 'a');
  await b.join(room, 'b');
  await a.next('peer_list_updated', (p) => p.room_name === room && p.version === 2);
  a.close();
  b.close();
  await gone(room);

  const [c, d] = await Promise.all([on(0), on(1)]);
  c.emit('join_room', { room_name: room, peer_id: 'c', username: 'c' });
  assert.equal((await c.next('join_room_success')).version, 1);
  d.emit('join_room', { room_name: room, peer_id: 'd', username: 'd' });
  assert.equal((await d.next('join_room_success')).version, 2);
  // c, on the node that had a member of the earlier room, must hear of d's join.
  const update = await c.next('peer_list_updated', (p) => p.room_name === room && p.version === 2, 3000);
  assert.deepEqual(ids(update.peers), ['c', 'd']);
});
