// Four Node processes add to a shared counter under a named Spindle lock: the count is exact.
//
// Each child process opens a session (kept alive by a KeepAlive stream), then 10 times: acquires
// the lock "examples/node-lock/..." (LockService.Acquire, waiting in FIFO order), reads the
// counter (ValueService.GetValue), writes it back plus one (SetValue) and releases the lock.
// Without the lock, concurrent read-then-write would lose increments.
//
//   node examples/node/lock.js [--address HOST:PORT]
//
// Last line: "node lock: 4 processes x 10 increments = 40 (exact)".
'use strict';

const { fork } = require('child_process');
const { parseArgs, connect, openSession, unique } = require('./spindle');

const PROCESSES = 4;
const INCREMENTS = 10;

async function child(args) {
  const conn = connect(args.address);
  const session = await openSession(conn);
  let lastToken = 0;
  for (let i = 0; i < INCREMENTS; i++) {
    const acquired = await conn.call('lock', 'Acquire', {
      name: args.lock, session_id: session.id, owner: `pid-${process.pid}`, wait: true, max_wait_ms: 20000,
    }, 30000);
    if (!acquired.acquired) throw new Error('lock not acquired in 20 s');
    const token = acquired.grant.fencing_token;
    if (token <= lastToken) throw new Error(`fencing token went back: ${token} after ${lastToken}`);
    lastToken = token;
    try {
      const { entry } = await conn.call('value', 'GetValue', { name: args.counter });
      await conn.call('value', 'SetValue', { name: args.counter, data: { int64_value: entry.data.int64_value + 1 } });
    } finally {
      await conn.call('lock', 'Release', { lease_id: acquired.grant.lease_id });
    }
  }
  await session.close();
  conn.close();
}

async function main(args) {
  const lock = unique('lock');
  const counter = unique('counter');
  const conn = connect(args.address);
  await conn.call('value', 'SetValue', { name: counter, data: { int64_value: 0 } });
  const codes = await Promise.all(Array.from({ length: PROCESSES }, () => new Promise((resolve) => {
    const proc = fork(__filename, ['--child', '--address', args.address, '--lock', lock, '--counter', counter]);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
    proc.on('exit', (code) => { clearTimeout(timer); resolve(code); });
  })));
  const { entry } = await conn.call('value', 'GetValue', { name: counter });
  await conn.call('value', 'DeleteValue', { name: counter });
  await conn.call('lock', 'DeleteLock', { name: lock });
  conn.close();
  const total = entry.data.int64_value;
  console.log(`child exit codes: ${codes.join(' ')}`);
  const exact = total === PROCESSES * INCREMENTS && codes.every((c) => c === 0);
  console.log(`node lock: ${PROCESSES} processes x ${INCREMENTS} increments = ${total} (${exact ? 'exact' : 'WRONG'})`);
  return exact ? 0 : 1;
}

const args = parseArgs();
(args.child !== undefined ? child(args).then(() => 0) : main(args)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err.message); process.exitCode = 1; });
