// What the Node peers of the benchmarks share: the command line of the benchmarks (node-echo.mjs,
// node-broadcast.mjs, node-socketio.mjs): the same as Switchboard's examples,
//
//   --port P [--host H]      (port 0 picks a free port; the host defaults to 127.0.0.1)
//
// A bad command line prints the usage of `name` and exits with 2.
export function parseHostPort(name, argv = process.argv.slice(2)) {
  const usage = (msg) => {
    if (msg) console.error(`${name}: ${msg}`);
    console.error(`usage: ${name}.mjs --port P [--host H]`);
    process.exit(2);
  };
  let host = '127.0.0.1';
  let port = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') port = Number(val());
    else if (a === '--host') host = val();
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (port === null || !Number.isInteger(port) || port < 0 || port > 65535) usage('--port is required');
  return { host, port };
}

/**
 * The life of a `ws` WebSocketServer as the benchmark expects it: prints `listening on
 * HOST:PORT` once it accepts connections, exits 1 on a server error, and on SIGTERM or SIGINT
 * drops its clients and exits 0 (within 2 s).
 */
export function serveUntilSignal(name, wss) {
  wss.on('listening', () => {
    const a = wss.address();
    process.stdout.write(`listening on ${a.address}:${a.port}\n`);
  });
  wss.on('error', (err) => {
    console.error(`${name}: ${err.message}`);
    process.exit(1);
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const ws of wss.clients) ws.terminate();
    wss.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
