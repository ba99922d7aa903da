// A producer and two consumers share a Spindle queue; every item is received and acked once.
//
// The producer puts 50 items in batches (QueueService.PutItems). Two consumers LEASE items
// (GetItems with mode LEASE under their session, waiting up to 1 s per call), and acknowledge each
// one (AckItems) after handling it; an item whose consumer died would come back to the queue.
// When the producer is done it closes the queue; the consumers drain it and stop at
// OUT_OF_RANGE (reason QUEUE_DRAINED), the end of the queue.
//
//   node examples/node/queue.js [--address HOST:PORT]
//
// Last line: "node queue: 50 items, 50 received once each, 50 acked".
'use strict';

const { grpc, parseArgs, connect, openSession, unique } = require('./spindle');

const ITEMS = 50;

async function consume(conn, session, queue, received, deadline) {
  let acked = 0;
  while (Date.now() < deadline) {
    let response;
    try {
      response = await conn.call('queue', 'GetItems', {
        queue, max_items: 5, mode: 'QUEUE_GET_MODE_LEASE', session_id: session.id, wait: true, max_wait_ms: 1000,
      });
    } catch (err) {
      if (err.code === grpc.status.OUT_OF_RANGE && err.reason === 'QUEUE_DRAINED') break;  // The end.
      throw err;
    }
    if (response.items.length === 0) continue;
    for (const item of response.items) received.push(item.payload.toString());
    const { results } = await conn.call('queue', 'AckItems', { queue, receipts: response.items.map((i) => i.receipt) });
    for (const r of results) {
      if (r.status.code !== 0) throw new Error(`ack failed: ${r.status.message}`);
    }
    acked += results.length;
  }
  return acked;
}

async function main(args) {
  const queue = unique('queue');
  const conn = connect(args.address);
  const session = await openSession(conn);
  const deadline = Date.now() + 60000;
  const received = [];
  const consumers = [0, 1].map(() => consume(conn, session, queue, received, deadline));
  for (let start = 0; start < ITEMS; start += 10) {
    const items = [];
    for (let n = start; n < start + 10; n++) items.push({ payload: Buffer.from(`item-${n}`) });
    await conn.call('queue', 'PutItems', { queue, items, wait: true });
  }
  await conn.call('queue', 'CloseQueue', { name: queue });
  const acked = (await Promise.all(consumers)).reduce((a, b) => a + b, 0);
  await conn.call('queue', 'DeleteQueue', { name: queue });
  await session.close();
  conn.close();
  const distinct = new Set(received);
  const once = received.length === ITEMS && distinct.size === ITEMS;
  console.log(`received ${received.length}, distinct ${distinct.size}`);
  console.log(`node queue: ${ITEMS} items, ${once ? ITEMS : received.length} received ${once ? 'once each' : 'WRONG'}, ${acked} acked`);
  return once && acked === ITEMS ? 0 : 1;
}

main(parseArgs()).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err.message); process.exitCode = 1; });
