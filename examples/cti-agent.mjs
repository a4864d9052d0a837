// Demo CTI agent: listens for the backend's callback, registers with the backend, and checks it gets called back on its own address.
import net from 'node:net';
import process from 'node:process';

const USAGE =
  'usage: node examples/cti-agent.mjs --backend HOST[:PORT] [--name NAME] [--listen-port 9000] [--hold-ms 0] [--timeout-ms 15000]\n' +
  'exit: 0 ok, 2 usage, 3 rejected by backend, 4 timeout, 5 socket/protocol error, 6 backend could not call back';
const MAX_LINE = 4096;

function usageError(message) {
  console.error(`agent: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

function parseArgs(argv) {
  const session = process.env.VIPNAT_SESSION_ID;
  const opts = {
    backendHost: null,
    backendPort: 5060,
    name: session ? `agent-${session}` : `agent-${process.pid}`,
    listenPort: 9000,
    holdMs: 0,
    timeoutMs: 15000,
  };
  const numeric = { '--listen-port': 'listenPort', '--hold-ms': 'holdMs', '--timeout-ms': 'timeoutMs' };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (!(arg in numeric) && arg !== '--backend' && arg !== '--name') usageError(`unknown argument ${JSON.stringify(arg)}`);
    if (value === undefined) value = argv[++i];
    if (value === undefined || value === '') usageError(`${arg} needs a value`);
    if (arg === '--backend') {
      Object.assign(opts, parseBackend(value));
    } else if (arg === '--name') {
      // The name travels inside space-separated protocol lines.
      if (/\s/.test(value)) usageError(`--name must not contain whitespace, got ${JSON.stringify(value)}`);
      opts.name = value;
    } else {
      if (!/^\d+$/.test(value)) usageError(`${arg} needs a non-negative integer, got ${JSON.stringify(value)}`);
      opts[numeric[arg]] = Number(value);
    }
  }
  if (opts.backendHost === null) usageError('--backend HOST[:PORT] is required');
  if (opts.listenPort < 1 || opts.listenPort > 65535) usageError(`--listen-port must be 1-65535, got ${opts.listenPort}`);
  return opts;
}

// Accepts host, host:port, [v6] and [v6]:port; a bare v6 address has no port.
function parseBackend(value) {
  let host = value;
  let port = '5060';
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (bracket) {
    host = bracket[1];
    port = bracket[2] ?? port;
  } else if (value.split(':').length === 2) {
    [host, port] = value.split(':');
  }
  if (!host || !/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    usageError(`--backend must be HOST[:PORT] with PORT 1-65535, got ${JSON.stringify(value)}`);
  }
  return { backendHost: host, backendPort: Number(port) };
}

function plainIp(address) {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function lineReader(socket, onLine, onTooLong) {
  let buffered = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).replace(/\r$/, '');
      buffered = buffered.slice(nl + 1);
      onLine(line);
      if (socket.destroyed) return;
    }
    if (buffered.length > MAX_LINE) {
      buffered = '';
      onTooLong();
    }
  });
}

const opts = parseArgs(process.argv.slice(2));
const me = `agent ${opts.name}`;
const sockets = new Set();
let stage = `listening on 0.0.0.0:${opts.listenPort}`;
let callbackReceived = false;
let gotDone = false;
let exiting = false;
let backend = null;

function exit(code, message) {
  if (exiting) return;
  exiting = true;
  if (message) console.log(`${me}: ${message}`);
  clearTimeout(deadline);
  clearTimeout(holdTimer);
  listener.close();
  for (const s of sockets) s.end();
  process.exitCode = code;
  // end() waits for the peer's FIN; do not let a silent peer keep us alive.
  setTimeout(() => {
    for (const s of sockets) s.destroy();
    process.exit(code);
  }, 1000).unref();
}

const deadline = setTimeout(() => exit(4, `timed out after ${opts.timeoutMs} ms while ${stage}`), opts.timeoutMs);
let holdTimer;

const listener = net.createServer((socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  // A broken callback connection is the backend's failure to report, not ours.
  socket.on('error', () => {});
  lineReader(
    socket,
    (line) => {
      const m = /^CALLBACK (\S+)(?: .*)?$/.exec(line);
      const where = `${plainIp(socket.localAddress)}:${socket.localPort}`;
      if (!m) {
        console.log(`${me}: unexpected line on callback listener ${where}: ${JSON.stringify(line.slice(0, 80))}`);
        socket.end('ERROR expected CALLBACK <agent-name>\n');
      } else if (m[1] !== opts.name) {
        // Callback meant for another agent: the demo's routing went wrong, say so.
        console.log(`${me}: callback for ${m[1]} (not me) received on ${where}`);
        socket.end(`NACK ${m[1]} wrong-agent\n`);
      } else {
        callbackReceived = true;
        console.log(`${me}: callback received on ${where}`);
        socket.end(`ACK ${opts.name}\n`);
      }
    },
    () => socket.destroy(),
  );
});

listener.on('error', (err) => exit(5, err.message));

listener.listen({ host: '0.0.0.0', port: opts.listenPort }, () => {
  stage = `connecting to backend ${opts.backendHost}:${opts.backendPort}`;
  backend = net.connect({ host: opts.backendHost, port: opts.backendPort });
  sockets.add(backend);
  backend.on('connect', () => {
    stage = 'waiting for the backend to answer REGISTER';
    backend.write(`REGISTER ${opts.name}\n`);
  });
  backend.on('error', (err) => {
    if (gotDone)
      exit(0); // after DONE the work is done; a reset while holding is harmless
    else exit(5, err.message);
  });
  backend.on('close', () => {
    sockets.delete(backend);
    if (gotDone) exit(0);
    else exit(5, `backend closed the connection while ${stage}`);
  });
  lineReader(backend, onBackendLine, () => exit(5, `backend sent a line longer than ${MAX_LINE} bytes`));
});

function onBackendLine(line) {
  if (line.startsWith('REJECT')) return exit(3, `rejected by backend: ${line}`);
  if (line.startsWith('OK ')) {
    console.log(`${me}: registered, backend sees me as ${line.slice(3).trim()}`);
    if (process.env.VIPNAT_VIP) console.log(`${me}: my VIP per vipnat: ${process.env.VIPNAT_VIP}`);
    stage = 'waiting for the callback and DONE';
    return;
  }
  if (line === 'DONE' || line.startsWith('DONE ')) {
    if (line !== 'DONE' || !callbackReceived) {
      const why = line.startsWith('DONE callback-failed ') ? line.slice('DONE callback-failed '.length) : 'no callback arrived here';
      return exit(6, `backend could not call me back: ${why}`);
    }
    gotDone = true;
    clearTimeout(deadline);
    // Holding keeps this connection concurrent with the other agents' in the demo.
    holdTimer = setTimeout(() => exit(0), opts.holdMs);
    return;
  }
  exit(5, `unexpected line from backend: ${JSON.stringify(line.slice(0, 80))}`);
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => exit(signal === 'SIGINT' ? 130 : 143, `stopped by ${signal}`));
}
