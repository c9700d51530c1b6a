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

function usage(msg) {
  if (msg) console.error(`node-echo: ${msg}`);
  console.error('usage: node-echo.mjs --port P [--host H]');
  process.exit(2);
}

let host = '127.0.0.1';
let port = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--port') port = Number(val());
  else if (a === '--host') host = val();
  else if (a === '--help' || a === '-h') usage();
  else usage(`unknown argument ${a}`);
}
if (port === null || !Number.isInteger(port) || port < 0 || port > 65535) usage('--port is required');

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {}); // a client that vanishes must not crash the server
});

wss.on('listening', () => {
  const a = wss.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});

wss.on('error', (err) => {
  console.error(`node-echo: ${err.message}`);
  process.exit(1);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
