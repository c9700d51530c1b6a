// sb_hub_send_to_cb end to end (hubtest's /sendcb/ID): a direct message whose outcome comes
// from a callback on a later loop turn, so that an unknown connection is 404 with any engine —
// the memory engine here, which knows at once, and (with --redis, a later issue) one that
// answers later. The answer to the request is sent from that callback.
//
// The server is started with --port 0 and stopped by PID in an after hook; a server that died,
// needed SIGKILL, exited non-zero or printed a sanitizer report fails the suite.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, test } from 'node:test';
import { HUBTEST_BIN, HubClient, show, startServer } from './hub.mjs';
import { KIND } from './proto.mjs';

let srv;
const clients = [];

before(async () => { srv = await startServer(HUBTEST_BIN, []); });

after(async () => {
  for (const c of clients) c.destroy();
  const x = await srv.stop();
  const report = srv.sanitizerReport();
  if (report) throw new Error(`sanitizer report from hubtest:\n${report}`);
  assert.equal(x.killed, false, 'hubtest exited within 10 s of SIGTERM');
  assert.equal(x.code, 0, `hubtest exit: ${JSON.stringify(x)}; stderr: ${srv.stderr().slice(-3000)}`);
});

async function connect(label) {
  const c = await HubClient.connect(srv.port, { label });
  clients.push(c);
  return c;
}

test('/sendcb/ID: 404 for no such session, 200 and the push for a live or a resumable one', async () => {
  const a = await connect('a');
  const b = await connect('b');
  for (const id of [crypto.randomBytes(16).toString('base64url'), 'short', `${b.id}x`]) {
    const r = await a.request(`/sendcb/${id}`, 'nobody');
    assert.equal(r.kind, KIND.RESPONSE, show(r));
    assert.equal(r.status, 404, `/sendcb/${id}: ${show(r)}`);
  }
  assert.equal(await a.ok(`/sendcb/${b.id}`, 'for b'), '');
  const p = await b.take((m) => m.kind === KIND.PUSH && m.stream === `c:${b.id}`, 5000, 'the direct push');
  assert.equal(p.offset, 1n);
  assert.equal(p.body.toString(), 'for b');
  // A session whose connection left is still there (resumable): accepted, not 404.
  const gone = b.id;
  b.destroy();
  await b.waitEnded();
  const r = await a.request(`/sendcb/${gone}`, 'while away');
  assert.equal(r.status, 200, `a closed, resumable session takes direct messages: ${show(r)}`);
  // The synchronous form agrees with the memory engine.
  const s = await a.request(`/send/${crypto.randomBytes(16).toString('base64url')}`, 'x');
  assert.equal(s.status, 404, show(s));
});
