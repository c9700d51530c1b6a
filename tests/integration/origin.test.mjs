// The Origin allow-list of the upgrade (server option allowed_origins, echo --origins): a
// listed origin is upgraded, another is refused with 403 before any WebSocket traffic, and an
// upgrade without an Origin header (not a browser) goes through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEcho, httpExchange, upgradeRequest } from './lib.mjs';

let srv;
before(async () => { srv = await startEcho(['--origins', 'https://app.example,https://admin.example']); });
after(async () => { if (srv) await srv.stop(); });

const upgrade = (extra) => httpExchange(srv.port, upgradeRequest({ extra }), { waitClose: false, timeoutMs: 1500 });

test('a listed origin is upgraded (101)', async () => {
  for (const o of ['https://app.example', 'https://admin.example']) {
    const r = await upgrade([['Origin', o]]);
    assert.match(r.statusLine, /^HTTP\/1\.1 101 /, `origin ${o}`);
  }
});

test('another origin is refused with 403 and the connection is closed', async () => {
  for (const o of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
    const r = await httpExchange(srv.port, upgradeRequest({ extra: [['Origin', o]] }), { timeoutMs: 3000 });
    assert.match(r.statusLine, /^HTTP\/1\.1 403 Forbidden/, `origin ${o}`);
    assert.equal(r.body.toString(), 'origin not allowed\n');
    assert.equal(r.closed, true);
  }
});

test('no Origin header (not a browser) is upgraded', async () => {
  const r = await upgrade([]);
  assert.match(r.statusLine, /^HTTP\/1\.1 101 /);
});
