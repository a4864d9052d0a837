// Demo CTI backend: rejects a second connection from the same client IP and calls each registered agent back on its own address.
import net from 'node:net';
import process from 'node:process';

const USAGE = 'usage: node examples/cti-backend.mjs [--port 5060] [--callback-port 9000] [--expect N] [--timeout-ms 20000] [--json]';
const MAX_LINE = 4096; // a peer that never sends '\n' must not grow our buffer forever
const CALLBACK_TIMEOUT_MS = 5000;
const LINGER_MS = 1000; // time for DONE and FIN to flush before sockets are destroyed at exit

function fail(message) {
  console.error(`backend: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { port: 5060, callbackPort: 9000, expect: 0, timeoutMs: 20000, json: false };
  const numeric = { '--port': 'port', '--callback-port': 'callbackPort', '--expect': 'expect', '--timeout-ms': 'timeoutMs' };
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
    } else if (arg === '--json') {
      opts.json = true;
    } else if (arg in numeric) {
      if (value === undefined) value = argv[++i];
      if (value === undefined || !/^\d+$/.test(value)) fail(`${arg} needs a non-negative integer, got ${JSON.stringify(value ?? '')}`);
      opts[numeric[arg]] = Number(value);
    } else {
      fail(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  for (const key of ['port', 'callbackPort']) {
    if (opts[key] < 1 || opts[key] > 65535) fail(`${key === 'port' ? '--port' : '--callback-port'} must be 1-65535, got ${opts[key]}`);
  }
  return opts;
}

// The server socket is dual-stack-capable, so IPv4 peers may show up as ::ffff:a.b.c.d.
function plainIp(address) {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function ipSortKey(ip) {
  const parts = ip.split('.');
  return parts.length === 4 ? parts.reduce((acc, p) => acc * 256 + Number(p), 0) : Number.MAX_SAFE_INTEGER;
}

// Calls onLine for each '\n'-terminated line, onTooLong if a line outgrows MAX_LINE.
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

const openByIp = new Map(); // ip -> registration socket currently open from that ip
const clients = new Map(); // ip -> { agent, callback: null | true | false, error }
const sockets = new Set(); // every socket, so exit can close them all
let rejected = 0;
let peerErrors = 0;
let finishing = false;
let deadline;

const server = net.createServer((socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  const ip = plainIp(socket.remoteAddress);

  if (finishing) {
    socket.destroy();
    return;
  }
  socket.on('error', (err) => {
    if (finishing) return;
    peerErrors++;
    console.log(`backend: connection from ${ip}: ${err.code ?? err.message}`);
  });

  if (openByIp.has(ip)) {
    rejected++;
    console.log(`backend: rejected second connection from ${ip} (duplicate IP)`);
    socket.end(`REJECT duplicate-ip ${ip}\n`);
    return;
  }
  openByIp.set(ip, socket);
  socket.on('close', () => {
    if (openByIp.get(ip) === socket) openByIp.delete(ip);
  });

  let name = null;
  lineReader(
    socket,
    (line) => {
      if (name !== null) return; // only the first REGISTER counts
      const m = /^REGISTER (\S+)$/.exec(line.trim());
      if (!m) {
        console.log(`backend: protocol error from ${ip}: expected "REGISTER <agent-name>", got ${JSON.stringify(line.slice(0, 80))}`);
        socket.end('ERROR expected REGISTER <agent-name>\n');
        return;
      }
      name = m[1];
      clients.set(ip, { agent: name, callback: null, error: null });
      console.log(`backend: agent ${name} registered from ${ip}`);
      socket.write(`OK ${ip}\n`);
      callBack(ip, name, (error) => {
        if (finishing) return; // the summary is already out
        const client = clients.get(ip);
        if (client && client.agent === name) {
          client.callback = error === null;
          client.error = error;
        }
        if (error === null) console.log(`backend: callback to ${ip}:${opts.callbackPort} acknowledged by ${name}`);
        else console.log(`backend: callback to ${ip}:${opts.callbackPort} failed: ${error}`);
        // DONE carries the failure so the agent need not wait for its timeout.
        if (!socket.destroyed && socket.writable) socket.write(error === null ? 'DONE\n' : `DONE callback-failed ${error}\n`);
        maybeFinish();
      });
    },
    () => {
      console.log(`backend: protocol error from ${ip}: line longer than ${MAX_LINE} bytes`);
      socket.destroy();
    },
  );
});

// Opens A:CALLBACK_PORT, sends CALLBACK, and reports null on a matching ACK or an error code otherwise.
function callBack(ip, name, done) {
  let settled = false;
  const socket = net.connect({ host: ip, port: opts.callbackPort });
  sockets.add(socket);
  const settle = (error) => {
    if (settled) return;
    settled = true;
    socket.destroy();
    done(error);
  };
  socket.on('close', () => {
    sockets.delete(socket);
    settle('closed-without-ack');
  });
  socket.setTimeout(CALLBACK_TIMEOUT_MS, () => settle('ETIMEDOUT'));
  socket.on('error', (err) => settle(err.code ?? err.message));
  socket.on('connect', () => socket.write(`CALLBACK ${name} from-backend\n`));
  lineReader(
    socket,
    (line) => {
      if (line.trim() === `ACK ${name}`) {
        settled = true;
        socket.end(); // graceful close; 'close' then finds settled already true
        done(null);
      } else {
        // Error codes stay one token; the odd reply itself is worth a line of its own.
        if (!finishing)
          console.log(`backend: callback to ${ip}:${opts.callbackPort} got unexpected reply ${JSON.stringify(line.slice(0, 80))}`);
        settle('unexpected-reply');
      }
    },
    () => settle('reply-too-long'),
  );
}

function maybeFinish() {
  if (opts.expect === 0 || finishing) return;
  let finished = 0;
  for (const c of clients.values()) if (c.callback !== null) finished++;
  if (finished >= opts.expect) finish();
}

function finish() {
  if (finishing) return;
  finishing = true;
  clearTimeout(deadline);

  const rows = [...clients.entries()].sort((a, b) => ipSortKey(a[0]) - ipSortKey(b[0]));
  const ok = rows.filter(([, c]) => c.callback === true).length;
  console.log(`backend: summary distinct-ips ${rows.length} callbacks-ok ${ok} rejected ${rejected}`);
  for (const [ip, c] of rows) console.log(`backend:   ${ip} agent ${c.agent} callback ${c.callback === true ? 'ok' : 'failed'}`);
  if (opts.json) {
    const summary = {
      event: 'backend-summary',
      distinctIps: rows.length,
      callbacksOk: ok,
      rejected,
      peerErrors,
      clients: rows.map(([ip, c]) => ({ ip, agent: c.agent, callback: c.callback === true, ...(c.error ? { error: c.error } : {}) })),
    };
    console.log(JSON.stringify(summary));
  }
  // With --expect the target is N; otherwise every registered IP should have been called back.
  const target = opts.expect > 0 ? opts.expect : rows.length;
  process.exitCode = ok === target ? 0 : 1;

  server.close();
  for (const s of sockets) s.end();
  setTimeout(() => {
    for (const s of sockets) s.destroy();
  }, LINGER_MS).unref();
  // Last resort if something still holds the event loop.
  setTimeout(() => process.exit(), LINGER_MS + 2000).unref();
}

server.on('error', (err) => {
  console.error(`backend: cannot listen on 0.0.0.0:${opts.port}: ${err.code ?? err.message}`);
  process.exit(2);
});

server.listen({ host: '0.0.0.0', port: opts.port }, () => {
  console.log(`backend: listening on 0.0.0.0:${opts.port}`);
  if (opts.expect > 0) {
    deadline = setTimeout(() => {
      console.log(`backend: timeout after ${opts.timeoutMs} ms waiting for ${opts.expect} agents`);
      finish();
    }, opts.timeoutMs);
  }
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (finishing) process.exit(process.exitCode ?? 1); // second signal: stop waiting
    finish();
  });
}
