#!/usr/bin/env node
// Checks bench/node-socketio-cluster.mjs with Socket.IO's own client (npm `socket.io-client`)
// before bench/fanout.c (which speaks Engine.IO v4 / Socket.IO v5 itself) measures it: two
// nodes on one Redis, a subscriber on node B and a publisher on node A.
//
//   node bench/sio-cluster-check.mjs --pub-port A --port B [--host H]
//
// Both connect over the WebSocket transport only. The publisher emits `p` with three strings
// (one of them 32 characters, as the benchmark sends); the subscriber on the other node must
// receive each as `m`, in order, and the publisher its own copies (it is in the room too).
// Prints one line per check; exits 0 if all pass, 1 otherwise, and 1 after 10 s whatever
// happens.
import { deepStrictEqual } from 'node:assert';
import { io } from 'socket.io-client';

let host = '127.0.0.1';
let port = null;
let pubPort = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else if (args[i] === '--pub-port' && i + 1 < args.length) pubPort = Number(args[++i]);
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else {
    console.error('usage: sio-cluster-check.mjs --pub-port A --port B [--host H]');
    process.exit(2);
  }
}
const okPort = (p) => Number.isInteger(p) && p > 0 && p <= 65535;
if (!okPort(port) || !okPort(pubPort)) {
  console.error('sio-cluster-check: --port and --pub-port are required');
  process.exit(2);
}

const timer = setTimeout(() => {
  console.error('sio-cluster-check: not everything arrived within 10 s');
  process.exit(1);
}, 10000);

const bodies = ['hello', '0000000000000001abcdefghijklmnop', 'caf\u00e9 \u2603'];
const connect = (p) => new Promise((resolve) => {
  const s = io(`http://${host}:${p}`, { transports: ['websocket'], reconnection: false });
  s.on('connect_error', (err) => {
    console.error(`sio-cluster-check: cannot connect to port ${p}: ${err.message}`);
    process.exit(1);
  });
  s.on('connect', () => resolve(s));
});
const collect = (s) => {
  const got = [];
  const waiters = [];
  s.on('m', (body) => {
    got.push(body);
    while (waiters.length && got.length >= waiters[0].n) waiters.shift().resolve();
  });
  return { got, until: (n) => new Promise((resolve) => {
    if (got.length >= n) resolve();
    else waiters.push({ n, resolve });
  }) };
};

const sub = await connect(port);
const subGot = collect(sub);
const pub = await connect(pubPort);
const pubGot = collect(pub);
for (const b of bodies) pub.emit('p', b);
await Promise.all([subGot.until(bodies.length), pubGot.until(bodies.length)]);
// Anything more would have come by now: both got every message, and nothing else.
await new Promise((r) => setTimeout(r, 200));
let failed = 0;
for (const [who, c] of [['subscriber on the other node', subGot], ['publisher (own copies)', pubGot]]) {
  try {
    deepStrictEqual(c.got, bodies);
    console.log(`sio-cluster-check: ${who}: ${JSON.stringify(c.got)} ok`);
  } catch {
    failed++;
    console.error(`sio-cluster-check: ${who}: expected ${JSON.stringify(bodies)}, got ${JSON.stringify(c.got)}`);
  }
}
sub.disconnect();
pub.disconnect();
clearTimeout(timer);
console.log(`sio-cluster-check: ${2 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
