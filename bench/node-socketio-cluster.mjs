#!/usr/bin/env node
// The Socket.IO peer of examples/broadcast --redis for the cross-node fan-out benchmark: the
// npm `socket.io` server with `@socket.io/redis-adapter` on the npm `redis` client (node-redis
// 4), WebSocket transport only. Start two of them on one Redis and they are one Socket.IO
// cluster, as two `broadcast --redis` are one Switchboard cluster:
//
//   node bench/node-socketio-cluster.mjs --port P [--host H] --redis redis://HOST:PORT
//
// Every connection joins the room "all" (as broadcast joins every connection to the group
// "all"); an event `p` with a string is emitted to the room as event `m` with that string:
//
//   socket.on('p', (body) => io.to('all').emit('m', body))
//
// The adapter sends it to the room's members on this node and PUBLISHes it once to Redis
// (channel socket.io#/#all#, the packet in msgpack), and every other node, subscribed to
// socket.io#/#* since it started, sends it to its own members of the room.
//
// Prints `listening on HOST:PORT` once its Redis subscriptions are in place and it accepts
// connections; exits 1 if Redis cannot be reached within 5 s, 0 on SIGTERM or SIGINT.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { parseHostPort } from './node-args.mjs';

const NAME = 'node-socketio-cluster';
const argv = process.argv.slice(2);
const at = argv.indexOf('--redis');
if (at < 0 || at + 1 >= argv.length || !/^redis:\/\//.test(argv[at + 1])) {
  console.error(`${NAME}: --redis redis://HOST:PORT is required`);
  console.error(`usage: ${NAME}.mjs --port P [--host H] --redis redis://HOST:PORT`);
  process.exit(2);
}
const redisUrl = argv[at + 1];
argv.splice(at, 2);
const { host, port } = parseHostPort(NAME, argv);

const fail = (what) => (err) => {
  console.error(`${NAME}: ${what}: ${err && err.message ? err.message : err}`);
  process.exit(1);
};
const giveUp = setTimeout(() => fail('redis')(`no connection to ${redisUrl} within 5 s`), 5000);

const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
pubClient.on('error', fail('redis (publishing client)'));
subClient.on('error', fail('redis (subscribing client)'));
await Promise.all([pubClient.connect(), subClient.connect()]).catch(fail('redis'));

const http = createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(http, {
  transports: ['websocket'], // the same transport as Switchboard; no polling handshake first
  serveClient: false,
  perMessageDeflate: false,
  adapter: createAdapter(pubClient, subClient),
});
// The adapter subscribes without waiting; a command queued after its subscriptions on the
// same connection answers after them, so once it has, messages from other nodes arrive.
await subClient.subscribe(`${NAME}-ready`, () => {}).catch(fail('redis subscribe'));
clearTimeout(giveUp);

io.on('connection', (socket) => {
  socket.join('all');
  socket.on('p', (body) => {
    if (typeof body === 'string') io.to('all').emit('m', body);
  });
});

http.on('error', fail('http'));
http.listen(port, host, () => {
  const a = http.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  const done = () => process.exit(0);
  io.close(() => Promise.allSettled([pubClient.quit(), subClient.quit()]).then(done));
  setTimeout(done, 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
