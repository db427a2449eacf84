// Runs inside a fresh network namespace (see tests/node/half_open.test.mjs): a server and two
// clients on its loopback, then nftables drops every packet of one client's TCP connection,
// as a pulled cable or a NAT that forgot the flow would. Prints one JSON line with what it saw.
import { execFileSync } from 'node:child_process';
import { startServer, connect, uniq, ids, rooms } from '../lib/server.mjs';

const PING_INTERVAL = 1;
const PING_TIMEOUT = 1;

const srv = await startServer(['--ping-interval', String(PING_INTERVAL), '--ping-timeout', String(PING_TIMEOUT)]);
const room = uniq('half-open');
const a = await connect(srv.url);
const b = await connect(srv.url);
await a.join(room, 'a');
await b.join(room, 'b');
await a.next('peer_list_updated', (d) => ids(d.peers).includes('b'));

const port = b.sock.io.engine.transport.ws._socket.localPort;
const nft = (...args) => execFileSync('nft', args, { stdio: 'inherit' });
nft('add', 'table', 'inet', 'fault');
nft('add', 'chain', 'inet', 'fault', 'in', '{ type filter hook input priority 0; policy accept; }');
nft('add', 'rule', 'inet', 'fault', 'in', 'tcp', 'sport', String(port), 'drop');
nft('add', 'rule', 'inet', 'fault', 'in', 'tcp', 'dport', String(port), 'drop');
const cut = Date.now();
const update = await a.next('peer_list_updated', (d) => !ids(d.peers).includes('b'), 15_000);
const elapsedMs = Date.now() - cut;
const listed = ids((await rooms(srv.url))[room].peers);
const stillServed = (await a.ack('get_peers', {})).peers.length;
a.close();
b.close();
await srv.stop(2000);
console.log(JSON.stringify({
  elapsedMs, boundMs: (PING_INTERVAL + PING_TIMEOUT) * 1000, version: update.version, listed, stillServed,
}));
process.exit(0);
