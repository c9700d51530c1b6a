#!/usr/bin/env node
// The Node.js peer of examples/broadcast for the fan-out benchmark: a server on the npm `ws`
// package doing the same loop over its clients. Same command line as build/examples/broadcast:
//
//   node bench/node-broadcast.mjs --port P [--host H]      (port 0 picks a free port)
//
// Every binary message received is sent to every client, the sender included. So that what
// goes on the wire is the same size as Switchboard's (and bench/fanout.c reads both alike),
// the message is not sent as it came but as a PUSH envelope (docs/PROTOCOL.md §3), built once
// per message: a 31-byte header (kind 3, stream "g:all", an offset counting 1, 2, 3, ..., an
// epoch, the sender's method and url) in front of the body of the sender's SEND envelope. That
// is the whole difference from a plain `for (const c of wss.clients) c.send(data)`: no
// history, sessions or HELLO. Prints `listening on HOST:PORT` once it accepts connections, has
// permessage-deflate off, and exits cleanly on SIGTERM or SIGINT.
import { randomBytes } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';
import { parseHostPort, serveUntilSignal } from './node-args.mjs';

const { host, port } = parseHostPort('node-broadcast');

const STREAM = Buffer.from('g:all');
const EPOCH = randomBytes(8);
EPOCH[0] |= 1; // non-zero
let offset = 0;

// Reads a LEB128 length at buf[i]; returns [value, next index] or null.
function varint(buf, i) {
  let v = 0;
  for (let shift = 0; shift < 35 && i < buf.length; shift += 7) {
    const b = buf[i++];
    v += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return [v, i];
  }
  return null;
}

// A SEND or REQUEST envelope: kind method status(2) id(4) stream offset(8) epoch(8) url body.
// Returns the PUSH to send, or null if `data` is not one.
function toPush(data) {
  if (data.length < 26 || (data[0] !== 4 && data[0] !== 1)) return null;
  let r = varint(data, 8);
  if (!r || r[0] > data.length - r[1] - 16) return null;
  let i = r[1] + r[0] + 16;
  r = varint(data, i);
  if (!r || r[0] > data.length - r[1]) return null;
  const urlStart = i;
  const bodyStart = r[1] + r[0];
  const urlField = bodyStart - urlStart; // varint + url bytes, copied as they are
  const out = Buffer.allocUnsafe(8 + 1 + STREAM.length + 16 + urlField + data.length - bodyStart);
  out[0] = 3;
  out[1] = data[1];
  out.writeUInt16BE(0, 2);
  out.writeUInt32BE(0, 4);
  out[8] = STREAM.length;
  STREAM.copy(out, 9);
  i = 9 + STREAM.length;
  offset++;
  out.writeUInt32BE(Math.floor(offset / 2 ** 32), i);
  out.writeUInt32BE(offset >>> 0, i + 4);
  EPOCH.copy(out, i + 8);
  i += 16;
  data.copy(out, i, urlStart, data.length);
  return out;
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return;
    const push = toPush(data);
    if (!push) return;
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(push, { binary: true });
    }
  });
  ws.on('error', () => {}); // a client that vanishes must not crash the server
});

serveUntilSignal('node-broadcast', wss);
