#!/usr/bin/env node
// Checks bench/node-socketio.mjs with Socket.IO's own client (npm `socket.io-client`), so that
// the benchmark's peer is known to answer what a real Socket.IO application would see, before
// bench/restgen.c (which speaks Engine.IO v4 / Socket.IO v5 itself) measures it:
//
//   node bench/sio-check.mjs --port P [--host H]
//
// It connects over the WebSocket transport only, emits `get` with an acknowledgement for
// /items/42, /items/a%20b (a decoded parameter) and /nope, compares each answer with the
// expected one, and disconnects. Prints one line per check; exits 0 if all pass, 1 otherwise,
// and 1 after 10 s whatever happens.
import { deepStrictEqual } from 'node:assert';
import { io } from 'socket.io-client';

let host = '127.0.0.1';
let port = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else {
    console.error('usage: sio-check.mjs --port P [--host H]');
    process.exit(2);
  }
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('sio-check: --port is required');
  process.exit(2);
}

const timer = setTimeout(() => {
  console.error('sio-check: no complete answer within 10 s');
  process.exit(1);
}, 10000);

const checks = [
  ['/items/42', { status: 200, body: { id: '42', name: 'item 42', price: 42 } }],
  ['/items/a%20b', { status: 200, body: { id: 'a b', name: 'item a b', price: 42 } }],
  ['/nope', { status: 404, body: { error: 'Not Found' } }],
];

const socket = io(`http://${host}:${port}`, { transports: ['websocket'], reconnection: false });
socket.on('connect_error', (err) => {
  console.error(`sio-check: cannot connect: ${err.message}`);
  process.exit(1);
});
socket.on('connect', async () => {
  let failed = 0;
  for (const [url, want] of checks) {
    const got = await socket.timeout(5000).emitWithAck('get', url).catch((e) => ({ error: e.message }));
    try {
      deepStrictEqual(got, want);
      console.log(`sio-check: get ${url} -> ${JSON.stringify(got)} ok`);
    } catch {
      failed++;
      console.error(`sio-check: get ${url}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
  }
  socket.disconnect();
  clearTimeout(timer);
  console.log(`sio-check: ${checks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
