#!/usr/bin/env node
// The Socket.IO peer of bench/rest-server.c for the REST round-trip benchmark: the npm
// `socket.io` server, WebSocket transport only (no HTTP long-polling, so no upgrade dance), and
// one event handler doing the work of Switchboard's `GET /items/:id` route:
//
//   socket.emit('get', '/items/7', (res) => ...)
//   res = { status: 200, body: { id: '7', name: 'item 7', price: 42 } }
//
// The handler parses the path (the query string cut off), matches it against /items/:id
// segment by segment, percent-decodes the parameter (as Switchboard's router does), builds the
// body and answers through the acknowledgement callback; a path that does not match gets
// { status: 404, body: { error: 'Not Found' } }, a malformed escape 400. Same command line as
// rest-server:
//
//   node bench/node-socketio.mjs --port P [--host H]      (port 0 picks a free port)
//
// Prints `listening on HOST:PORT` once it accepts connections (permessage-deflate is off, the
// engine.io default) and exits cleanly on SIGTERM or SIGINT.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { parseHostPort } from './node-args.mjs';

const { host, port } = parseHostPort('node-socketio');

// The route: /items/:id, whole segments, the parameter decoded. Returns the response.
function getItem(url) {
  if (typeof url !== 'string') return { status: 400, body: { error: 'Bad Request' } };
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const seg = path.split('/');
  if (seg.length !== 3 || seg[0] !== '' || seg[1] !== 'items' || seg[2] === '') {
    return { status: 404, body: { error: 'Not Found' } };
  }
  let id = seg[2];
  if (id.includes('%')) {
    try {
      id = decodeURIComponent(id);
    } catch {
      return { status: 400, body: { error: 'Bad Request' } };
    }
  }
  return { status: 200, body: { id, name: `item ${id}`, price: 42 } };
}

const http = createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(http, {
  transports: ['websocket'], // the same transport as Switchboard; no polling handshake first
  serveClient: false,
  perMessageDeflate: false,
});

io.on('connection', (socket) => {
  socket.on('get', (url, ack) => {
    if (typeof ack === 'function') ack(getItem(url));
  });
});

http.on('error', (err) => {
  console.error(`node-socketio: ${err.message}`);
  process.exit(1);
});
http.listen(port, host, () => {
  const a = http.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  io.close(() => process.exit(0)); // disconnects every client, closes the HTTP server
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
