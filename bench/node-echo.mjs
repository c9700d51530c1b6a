#!/usr/bin/env node
// The Node.js peer for Switchboard's benchmarks: an echo server on the npm `ws` package, with
// the same command line as build/examples/echo:
//
//   node bench/node-echo.mjs --port P [--host H]      (port 0 picks a free port)
//
// It prints `listening on HOST:PORT` on stdout once it accepts connections, echoes every
// message back with the same opcode (text stays text, binary stays binary), has
// permessage-deflate off, and exits cleanly on SIGTERM or SIGINT.
import { WebSocketServer } from 'ws';
import { parseHostPort, serveUntilSignal } from './node-args.mjs';

const { host, port } = parseHostPort('node-echo');

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {}); // a client that vanishes must not crash the server
});

serveUntilSignal('node-echo', wss);
