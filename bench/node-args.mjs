// The command line shared by the Node peers of the benchmarks (node-echo.mjs,
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
