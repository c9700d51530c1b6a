// sb_hub_history: a group's stored messages with its stream's position, answered later, the
// same with the memory engine (one node) and the redis engine (two nodes on one Redis): the
// newest N, a page from an offset, the position a client listens from (no push of the same
// epoch at or below it is new), and an empty group.
//
// hubtest answers /history/G with "<epoch> <offset> <first> <head>" then "<offset> <url> <body>"
// lines; the request body "FROM MAX" pages (empty: the newest 100).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { HUBTEST_BIN, HubClient, servers } from './hub.mjs';
import { KIND } from './proto.mjs';
import { startRedis } from './redis.mjs';

const running = servers();
let redis;
after(() => running.stopAll(() => redis?.stop()));

async function start(name, args = []) {
  return running.start(HUBTEST_BIN, args, { name });
}

async function history(c, g, body = '') {
  const r = await c.request(`/history/${g}`, body);
  assert.equal(r.status, 200, r.body.toString());
  const [head, ...lines] = r.body.toString().split('\n');
  const [epoch, offset, first, last] = head.split(' ').map(BigInt);
  const entries = lines.map((l) => {
    const [off, url, ...rest] = l.split(' ');
    return { offset: Number(off), url, body: rest.join(' ') };
  });
  return { epoch, offset: Number(offset), first: Number(first), head: Number(last), entries };
}

function cases(label, nodes) {
  test(`${label}: the newest, a page, the position, an empty group`, async () => {
    const [A, B] = nodes();
    const g = `h-${label}-${Date.now()}`;
    const m = await HubClient.connect(A.port, { label: 'member' });
    await m.ok(`/join/${g}`);
    const p = await HubClient.connect(A.port, { label: 'p' }), r = await HubClient.connect(B.port, { label: 'r' });
    for (let i = 1; i <= 5; i++) await p.ok(`/publish/${g}`, `m${i}`);
    await m.take((x) => x.kind === KIND.PUSH && x.body.toString() === 'm5', 5000, 'm5');
    const pushEpoch = BigInt(m.log.find((x) => x.kind === KIND.PUSH).epoch);
    const all = await history(r, g); // from the other node
    assert.equal(all.epoch, pushEpoch, 'the epoch of the pushes');
    assert.deepEqual([all.offset, all.first, all.head], [5, 1, 5]);
    assert.deepEqual(all.entries.map((e) => [e.offset, e.url, e.body]),
      [1, 2, 3, 4, 5].map((i) => [i, '/message', `m${i}`]));
    const newest = await history(r, g, '0 2');
    assert.deepEqual(newest.entries.map((e) => e.offset), [4, 5]);
    assert.equal(newest.offset, 5);
    const page = await history(r, g, '2 2');
    assert.deepEqual(page.entries.map((e) => e.body), ['m2', 'm3']);
    assert.equal(page.offset, 3, 'a page listens from its last entry');
    const past = await history(r, g, '9 5');
    assert.deepEqual([past.entries.length, past.offset, past.head], [0, 5, 5]);
    const empty = await history(r, `${g}-none`);
    assert.deepEqual([empty.entries.length, empty.offset, empty.head], [0, 0, 0]);
    assert.notEqual(empty.epoch, 0n, 'a stream, if empty, has an epoch');
    assert.equal((await r.request('/history/x', 'nonsense')).status, 400);
    for (const c of [m, p, r]) c.destroy();
  });
}

describe('memory engine', () => {
  let S;
  before(async () => { S = await start('mem'); });
  cases('memory', () => [S, S]);
});

describe('redis engine, two nodes', () => {
  let A, B;
  before(async () => {
    redis = await startRedis();
    A = await start('ha', ['--redis', redis.url, '--node-id', 'ha']);
    B = await start('hb', ['--redis', redis.url, '--node-id', 'hb']);
  });
  cases('redis', () => [A, B]);
});
