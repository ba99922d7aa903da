// What the Node examples share: loading @grpc/grpc-js and the spindle.v1 protos at run time
// (@grpc/proto-loader, no generated code), the --address flag, promisified unary calls and
// errors that carry the `spindle-reason` trailer.
//
// Not an example itself.
'use strict';

const path = require('path');
const { createRequire } = require('module');

const repo = path.resolve(__dirname, '..', '..');

// @grpc/grpc-js and @grpc/proto-loader: from the usual module path, else from tools/node_modules
// (where scripts/install-deps puts them).
function load(name) {
  try {
    return require(name);
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    return createRequire(path.join(repo, 'tools', 'package.json'))(name);
  }
}
const grpc = load('@grpc/grpc-js');
const protoLoader = load('@grpc/proto-loader');

const protosDir = process.env.SPINDLE_PROTOS || path.join(repo, 'protos');
const definition = protoLoader.loadSync(
  ['session', 'lock', 'queue', 'value'].map((f) => `spindle/v1/${f}.proto`),
  { includeDirs: [protosDir], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const v1 = grpc.loadPackageDefinition(definition).spindle.v1;

// --address HOST:PORT, default $SPINDLE_ADDRESS or 127.0.0.1:50051; other --flags as strings.
function parseArgs(argv = process.argv.slice(2)) {
  const args = { address: process.env.SPINDLE_ADDRESS || '127.0.0.1:50051' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const [key, inline] = argv[i].slice(2).split('=', 2);
      if (inline !== undefined) {
        args[key] = inline;
      } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
        args[key] = argv[++i];
      } else {
        args[key] = true;  // A flag without a value.
      }
    }
  }
  return args;
}

// One client per service on one channel; unary rpcs as promises rejecting with an Error that
// has `code` (grpc.status) and `reason` (the spindle-reason trailer).
function connect(address) {
  const credentials = grpc.credentials.createInsecure();
  const clients = {
    session: new v1.SessionService(address, credentials),
    lock: new v1.LockService(address, credentials),
    queue: new v1.QueueService(address, credentials),
    value: new v1.ValueService(address, credentials),
  };
  const call = (service, method, request, timeoutMs = 30000) => new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    clients[service][method](request, { deadline }, (err, response) => {
      if (err) {
        const reason = err.metadata ? err.metadata.get('spindle-reason')[0] : undefined;
        const wrapped = new Error(`${service}.${method}: ${grpc.status[err.code]} [${reason || ''}] ${err.details}`);
        wrapped.code = err.code;
        wrapped.reason = reason ? String(reason) : '';
        reject(wrapped);
      } else {
        resolve(response);
      }
    });
  });
  const close = () => Object.values(clients).forEach((c) => c.close());
  return { grpc, clients, call, close };
}

// A session kept alive by a KeepAlive stream (a ping every TTL/3); a crash of this process breaks
// the stream and the server closes the session at once (close_on_disconnect), releasing its locks.
async function openSession(conn, ttlMs = 10000) {
  const { session } = await conn.call('session', 'CreateSession', { ttl_ms: ttlMs, client_name: `node/${process.pid}` });
  const id = session.session_id;
  const stream = conn.clients.session.KeepAlive();
  stream.on('data', () => {});
  stream.on('error', () => {});  // Ends with CANCELLED when we close it.
  stream.write({ session_id: id, close_on_disconnect: true });
  let ping = 1;
  const timer = setInterval(() => stream.write({ ping_id: ping++ }), ttlMs / 3);
  return {
    id,
    async close() {
      clearInterval(timer);
      stream.end();
      await conn.call('session', 'CloseSession', { session_id: id });
    },
  };
}

function unique(kind) {
  return `examples/node-${kind}/${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

module.exports = { grpc, v1, parseArgs, connect, openSession, unique };
