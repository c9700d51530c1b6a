// The upgrade auth (src/ws/upgrade.c, src/rest/auth.c) through tests/fixtures/hubtest.c: the
// built-in JWT verification (HS256 and RS256; good, expired, not yet valid, wrong signature,
// wrong audience, wrong issuer, alg none, key confusion) with the token taken from each place
// it may come from; a custom hook that reads the request and accepts or rejects at once or
// later; the identity and claims on the connection; the "user:<id>" group; a resume going
// through the same auth (and refused for another identity); credentials that expire, are
// refreshed over AUTH, or close the connection with 4001 / 4003; time claims at the ends of
// int64 and of the wrong type; the sb_token cookie only from a trusted Origin; subprotocols of
// any length next to a bearer entry.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HubClient, HUBTEST_BIN, startServer } from './hub.mjs';
import net from 'node:net';
import { buildFrame, httpExchange, OP, startEcho, upgradeRequest, sleep } from './lib.mjs';
import { encodeEnvelope, KIND, METHOD } from './proto.mjs';

const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';
const now = () => Math.floor(Date.now() / 1000);

// payload: an object, or JSON text as it is to be signed (for numbers JavaScript cannot hold)
function jwt(payload, { alg = 'HS256', key = SECRET, header } = {}) {
  const enc = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
  const data = `${enc(header ?? { alg, typ: 'JWT' })}.${enc(payload)}`;
  let sig = '';
  if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(data).digest('base64url');
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(data), key).toString('base64url');
  return `${data}.${sig}`;
}

const claims = (sub, extra = {}) => ({ sub, aud: 'app', iss: 'issuer', exp: now() + 600, ...extra });
const bearer = (t) => ({ extra: [['Authorization', `Bearer ${t}`]] });

async function rejected(port, opts) {
  const r = await httpExchange(port, upgradeRequest({ host: `127.0.0.1:${port}`, ...opts }));
  return { status: r.status, body: r.body.toString('utf8').trim(), header: r.header };
}

async function identity(c) {
  const [id, cl, exp] = (await c.ok('/identity', '', { method: METHOD.GET })).split('|');
  let claims = null;
  try { claims = cl === '-' ? null : JSON.parse(cl); } catch { /* not JSON: a test's claims */ }
  return { id, claims, exp: Number(exp) };
}

const servers = [];
async function start(args) {
  const s = await startServer(HUBTEST_BIN, args, { name: 'hubtest' });
  servers.push(s);
  return s;
}
after(async () => {
  for (const s of servers) {
    const r = await s.stop();
    assert.equal(r.killed, false, 'hubtest needed SIGKILL');
    assert.equal(s.sanitizerReport(), null);
  }
});

describe('JWT HS256', () => {
  let srv;
  before(async () => {
    srv = await start(['--jwt-hs256', SECRET, '--jwt-aud', 'app', '--jwt-iss', 'issuer']);
  });

  test('a good token in Authorization: Bearer: the identity and claims reach the connection', async () => {
    const exp = now() + 600;
    const c = await HubClient.connect(srv.port, bearer(jwt(claims('alice', { exp, role: 'admin' }))));
    const me = await identity(c);
    assert.equal(me.id, 'alice');
    assert.equal(me.claims.role, 'admin');
    assert.equal(me.claims.sub, 'alice');
    assert.equal(me.exp, exp);
    c.destroy();
  });

  test('the token as a bearer.<token> subprotocol: accepted, and the real subprotocol chosen', async () => {
    const c = await HubClient.connect(srv.port, { protocols: `sb.v1, bearer.${jwt(claims('bob'))}` });
    assert.equal(c.head.header('sec-websocket-protocol'), 'sb.v1');
    assert.equal((await identity(c)).id, 'bob');
    c.destroy();
  });

  test('a bearer subprotocol token of several KiB (an RS256-sized JWT) is found', async () => {
    const t = jwt(claims('long', { pad: 'p'.repeat(2500) }));
    assert.ok(t.length > 3000);
    const c = await HubClient.connect(srv.port, { protocols: `sb.v1, bearer.${t}` });
    assert.equal(c.head.header('sec-websocket-protocol'), 'sb.v1');
    assert.equal((await identity(c)).id, 'long');
    c.destroy();
  });

  test('the token in the sb_token cookie and in the access_token query parameter', async () => {
    const c1 = await HubClient.connect(srv.port, { extra: [['Cookie', `a=1; sb_token=${jwt(claims('carol'))}; b=2`]] });
    assert.equal((await identity(c1)).id, 'carol');
    const c2 = await HubClient.connect(srv.port, { path: `/ws?x=1&access_token=${jwt(claims('dave'))}` });
    assert.equal((await identity(c2)).id, 'dave');
    c1.destroy();
    c2.destroy();
  });

  test('Authorization wins over the other places', async () => {
    const c = await HubClient.connect(srv.port, {
      extra: [['Authorization', `Bearer ${jwt(claims('erin'))}`], ['Cookie', `sb_token=${jwt(claims('frank'))}`]],
    });
    assert.equal((await identity(c)).id, 'erin');
    c.destroy();
  });

  const refused = [
    ['no token', null, 'token required'],
    ['expired', jwt(claims('x', { exp: now() - 10 })), 'token expired'],
    ['not yet valid', jwt(claims('x', { nbf: now() + 300 })), 'token not yet valid'],
    ['wrong signature', jwt(claims('x'), { key: 'another-secret-that-is-long-enough-too!!' }), 'bad signature or malformed token'],
    ['wrong audience', jwt(claims('x', { aud: 'other' })), 'wrong audience'],
    ['wrong issuer', jwt(claims('x', { iss: 'mallory' })), 'wrong issuer'],
    ['alg none', jwt(claims('x'), { alg: 'none', header: { alg: 'none', typ: 'JWT' } }), 'unsigned token (alg none)'],
    ['no exp', jwt({ sub: 'x', aud: 'app', iss: 'issuer' }), 'no exp claim'],
    ['garbage', 'not.a.token', 'malformed token header'],
  ];
  for (const [name, token, why] of refused) {
    test(`refused with 401: ${name}`, async () => {
      const r = await rejected(srv.port, token ? bearer(token) : {});
      assert.equal(r.status, 401);
      assert.equal(r.body, why);
      assert.match(r.header('www-authenticate'), /^Bearer/);
      if (token) assert.match(r.header('www-authenticate'), /error="invalid_token"/);
    });
  }

  test('every connection of an identity is in user:<id>; a push to the user reaches all of them', async () => {
    const a1 = await HubClient.connect(srv.port, bearer(jwt(claims('grace'))));
    const a2 = await HubClient.connect(srv.port, { protocols: `sb.v1, bearer.${jwt(claims('grace'))}` });
    const b = await HubClient.connect(srv.port, bearer(jwt(claims('heidi'))));
    await b.ok('/user/grace', 'for grace only');
    for (const c of [a1, a2]) {
      const m = await c.take((x) => x.kind === KIND.PUSH, 5000, 'the push to the user');
      assert.equal(m.stream, 'g:user:grace');
      assert.equal(m.url, '/user');
      assert.equal(m.body.toString(), 'for grace only');
    }
    await sleep(100);
    assert.equal(b.pushes('g:user:grace').length, 0);
    for (const c of [a1, a2, b]) c.destroy();
  });

  test('a resume goes through the upgrade auth, and only resumes the same identity', async () => {
    const a = await HubClient.connect(srv.port, bearer(jwt(claims('ivan'))));
    const id = a.id;
    const token = a.hello.token;
    a.destroy();
    await sleep(100);
    // Without credentials the resume cannot even start: the upgrade is refused.
    assert.equal((await rejected(srv.port, {})).status, 401);
    // Another identity with ivan's resume token: 403, and it stays its own fresh session.
    const m = await HubClient.connect(srv.port, bearer(jwt(claims('mallory'))));
    m.resume(token, []);
    const err = await m.take((x) => x.kind === KIND.ERROR, 5000, 'the refusal');
    assert.equal(err.status, 403);
    assert.notEqual(await m.ok('/whoami', '', { method: METHOD.GET }), id);
    m.destroy();
    // The refusal spent nothing: ivan resumes with the same token and gets his session back.
    const b = await HubClient.connect(srv.port, bearer(jwt(claims('ivan'))));
    b.resume(token, []);
    await b.take((x) => x.kind === KIND.RESUMED, 5000, 'RESUMED');
    assert.equal(await b.ok('/whoami', '', { method: METHOD.GET }), id);
    b.destroy();
    await sleep(100);
    // Now it is spent (single use): a second try with it gets 401.
    const c = await HubClient.connect(srv.port, bearer(jwt(claims('ivan'))));
    c.resume(token, []);
    const again = await c.take((x) => x.kind === KIND.ERROR, 5000, 'the second refusal');
    assert.equal(again.status, 401);
    assert.equal((await identity(c)).id, 'ivan');
    c.destroy();
  });
});

describe('JWT RS256', () => {
  let srv;
  let priv;
  let pubPem;
  before(async () => {
    const kp = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    priv = kp.privateKey;
    pubPem = kp.publicKey.export({ type: 'spki', format: 'pem' });
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sb-auth-')), 'pub.pem');
    fs.writeFileSync(file, pubPem);
    srv = await start(['--jwt-rs256', file]);
  });

  test('a good RS256 token is accepted', async () => {
    const c = await HubClient.connect(srv.port, bearer(jwt({ sub: 'judy', exp: now() + 60 }, { alg: 'RS256', key: priv })));
    assert.equal((await identity(c)).id, 'judy');
    c.destroy();
  });

  test('key confusion: an HS256 token signed with the public key is refused', async () => {
    const r = await rejected(srv.port, bearer(jwt({ sub: 'judy', exp: now() + 60 }, { key: pubPem })));
    assert.equal(r.status, 401);
    assert.equal(r.body, 'algorithm not allowed');
  });

  test('an RS256 token signed by another key is refused', async () => {
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const r = await rejected(srv.port, bearer(jwt({ sub: 'judy', exp: now() + 60 }, { alg: 'RS256', key: other })));
    assert.equal(r.status, 401);
    assert.equal(r.body, 'bad signature or malformed token');
  });
});

describe('credentials that expire', () => {
  let srv;
  before(async () => {
    // Asked 3 s ahead, or halfway: the sweep that notices runs once a second.
    srv = await start(['--jwt-hs256', SECRET, '--refresh-before-ms', '3000']);
  });
  const tok = (sub, secs) => jwt({ sub, exp: now() + secs });

  test('asked for a new token before expiry; a valid one keeps the connection open', async () => {
    const exp = now() + 5;
    const c = await HubClient.connect(srv.port, bearer(jwt({ sub: 'kim', exp })));
    const ask = await c.take((m) => m.kind === KIND.AUTH, 6000, 'the refresh request');
    assert.equal(ask.status, 401);
    assert.deepEqual(JSON.parse(ask.body), { expires: exp });
    assert.ok(now() < exp, 'asked before expiry');
    const exp2 = now() + 60;
    c.sendEnv({ kind: KIND.AUTH, body: jwt({ sub: 'kim', exp: exp2, v: 2 }) });
    const ok = await c.take((m) => m.kind === KIND.AUTH, 5000, 'the verdict');
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { expires: exp2 });
    while (now() <= exp + 1) await sleep(200);
    const me = await identity(c);
    assert.equal(me.exp, exp2);
    assert.equal(me.claims.v, 2);
    c.destroy();
  });

  test('without a new token the connection is closed with 4001 at expiry', async () => {
    const exp = now() + 2;
    const c = await HubClient.connect(srv.port, bearer(jwt({ sub: 'lee', exp })));
    const { frame } = await c.waitClosed(6000);
    assert.equal(frame.code, 4001);
    assert.equal(frame.reason.toString(), 'credentials expired');
    assert.ok(now() >= exp);
  });

  test('a refused new token is answered and the old credentials stand until they expire', async () => {
    const c = await HubClient.connect(srv.port, bearer(tok('max', 3)));
    c.sendEnv({ kind: KIND.AUTH, body: jwt({ sub: 'max', exp: now() - 5 }) });
    const no = await c.take((m) => m.kind === KIND.AUTH && 'error' in JSON.parse(m.body), 5000, 'the refusal');
    assert.equal(no.status, 401);
    assert.deepEqual(JSON.parse(no.body), { error: 'token expired' });
    assert.equal((await identity(c)).id, 'max');
    const { frame } = await c.waitClosed(6000);
    assert.equal(frame.code, 4001);
  });

  test('a new token for another identity closes the connection with 4003', async () => {
    const c = await HubClient.connect(srv.port, bearer(tok('nina', 60)));
    c.sendEnv({ kind: KIND.AUTH, body: tok('oscar', 60) });
    const { frame } = await c.waitClosed(5000);
    assert.equal(frame.code, 4003);
  });

  test('AUTH on a connection without expiring credentials is answered 400', async () => {
    const s2 = await start(['--auth', 'custom']);
    const c = await HubClient.connect(s2.port, bearer('ok-pat'));
    c.sendEnv({ kind: KIND.AUTH, body: 'anything' });
    const r = await c.take((m) => m.kind === KIND.AUTH, 5000, 'the answer');
    assert.equal(r.status, 400);
    c.destroy();
  });
});

describe('a custom upgrade hook', () => {
  let srv;
  before(async () => {
    srv = await start(['--auth', 'custom', '--handshake-timeout-ms', '1000']);
  });

  test('reads the path, headers, cookies, query and remote address of the upgrade', async () => {
    const c = await HubClient.connect(srv.port, {
      path: '/chat?q1=a%20b&z=1',
      extra: [['Authorization', 'Bearer ok-quinn'], ['X-Test', 'hello'], ['Cookie', 'c0=0; c1="v1"']],
    });
    const me = await identity(c);
    assert.equal(me.id, 'quinn');
    assert.deepEqual(me.claims, { addr: '127.0.0.1', path: '/chat', x: 'hello', c: 'v1', q: 'a b' });
    assert.equal(me.exp, 0);
    c.destroy();
  });

  test('an asynchronous verdict, and frames sent before the 101 are kept', async () => {
    const sock = await new Promise((resolve, reject) => {
      const s = net.connect({ port: srv.port, host: '127.0.0.1' }, () => resolve(s));
      s.once('error', reject);
    });
    const c = new HubClient(sock);
    const t0 = Date.now();
    const early = encodeEnvelope({ kind: KIND.REQUEST, method: METHOD.GET, id: 99, url: '/identity' });
    sock.write(Buffer.concat([upgradeRequest({ extra: [['Authorization', 'Bearer slow-rita']] }),
      buildFrame({ opcode: OP.BINARY, payload: early })]));
    const hello = await c.next(5000);
    assert.equal(c.head.status, 101);
    assert.ok(Date.now() - t0 >= 90, 'accepted after the lookup');
    assert.equal(hello.kind, KIND.HELLO);
    const r = await c.take((m) => m.kind === KIND.RESPONSE && m.id === 99, 5000, 'the early request\'s answer');
    assert.equal(r.body.toString().split('|')[0], 'rita');
    c.destroy();
  });

  test('rejections carry their status, headers and text', async () => {
    let r = await rejected(srv.port, bearer('deny'));
    assert.deepEqual([r.status, r.body], [403, 'not for you']);
    r = await rejected(srv.port, bearer('limit'));
    assert.deepEqual([r.status, r.body, r.header('retry-after')], [429, 'slow down', '7']);
    r = await rejected(srv.port, {});
    assert.deepEqual([r.status, r.body, r.header('www-authenticate')], [401, 'token required', 'Bearer']);
  });

  test('an upgrade left without a verdict is answered 503 at the handshake timeout', async () => {
    const r = await httpExchange(srv.port, upgradeRequest({ extra: [['Authorization', 'Bearer never']] }), { timeoutMs: 5000 });
    assert.equal(r.status, 503);
    assert.equal(r.body.toString().trim(), 'authentication timed out');
  });

  test('a verdict after the handshake timeout returns SB_ECLOSED, and the strings the hook kept stay valid', async () => {
    const r = await httpExchange(srv.port, upgradeRequest({
      extra: [['Authorization', 'Bearer slower-sam'], ['X-Test', 'x'.repeat(6000)]],
    }), { timeoutMs: 5000 });
    assert.equal(r.status, 503); // at the 1 s handshake timeout; the verdict comes at 1.5 s
    const c = await HubClient.connect(srv.port, bearer('ok-tom'));
    await sleep(800);
    assert.equal(await c.ok('/authstats', '', { method: METHOD.GET }), 'eclosed=1');
    c.destroy();
  });

  test('a rejected upgrade is closed at once, not after the close timeout', async () => {
    const r = await httpExchange(srv.port, upgradeRequest({ extra: [['Authorization', 'Bearer deny']] }), { timeoutMs: 4000 });
    assert.equal(r.status, 403);
    assert.ok(r.closed && r.closedAfterMs < 1000, `closed after ${r.closedAfterMs} ms`);
  });

  test('bad verdicts are answered 500, never written as they are', async () => {
    for (const t of ['badstatus', 'badheader', 'framing', `ok-${'i'.repeat(191)}`, 'ok-\u00ff']) {
      const r = await rejected(srv.port, bearer(t));
      assert.equal(r.status, 500, t);
      assert.equal(r.header('set-cookie'), undefined);
      assert.equal(r.body, 'internal error');
    }
    // 190 bytes is the longest identity
    const c = await HubClient.connect(srv.port, bearer(`ok-${'i'.repeat(190)}`));
    assert.equal((await identity(c)).id.length, 190);
    c.destroy();
  });

  test('the user:<id> groups cannot be joined by name', async () => {
    const c = await HubClient.connect(srv.port, bearer('ok-uma'));
    const r = await c.request('/join/user:victim', '', { method: METHOD.POST });
    assert.equal(r.status, 400);
    assert.equal((await c.ok('/join/room')).split('\n').sort().join(','), 'room,user:uma');
    // nor left by name: the hub keeps every connection of an identity in its group
    assert.equal((await c.ok('/leave/user:uma')).split('\n').sort().join(','), 'room,user:uma');
    c.destroy();
  });

  test('an asynchronous refresh; a second AUTH meanwhile gets 409; claims from the handle', async () => {
    const c = await HubClient.connect(srv.port, bearer('exp-vic-60'));
    assert.equal((await identity(c)).claims, null, 'claims are the token text, not JSON');
    c.sendEnv({ kind: KIND.AUTH, body: 'slowexp-vic-120' });
    c.sendEnv({ kind: KIND.AUTH, body: 'exp-vic-90' });
    const busy = await c.take((m) => m.kind === KIND.AUTH, 5000, 'the 409');
    assert.equal(busy.status, 409);
    const ok = await c.take((m) => m.kind === KIND.AUTH, 5000, 'the verdict');
    assert.equal(ok.status, 200);
    const exp = JSON.parse(ok.body).expires;
    assert.ok(exp >= now() + 115 && exp <= now() + 121, `expires ${exp}`);
    c.sendEnv({ kind: KIND.AUTH, body: 'exp-vic-300' }); // the claims are the handle's string
    assert.equal((await c.take((m) => m.kind === KIND.AUTH, 5000, 'the verdict')).status, 200);
    const res = await c.request('/identity', '', { method: METHOD.GET });
    assert.equal(res.body.toString().split('|')[1], 'exp-vic-300');
    c.destroy();
  });

  test('anonymous connections have no identity and no user group', async () => {
    const s2 = await start([]);
    const c = await HubClient.connect(s2.port);
    assert.deepEqual(await identity(c), { id: '', claims: null, exp: 0 });
    c.destroy();
  });
});

describe('JWT time claims: the ends of int64 and claims of the wrong type', () => {
  let srv;
  before(async () => { srv = await start(['--jwt-hs256', SECRET, '--jwt-leeway', '30']); });
  const raw = async (c) => (await c.ok('/identity', '', { method: METHOD.GET })).split('|');

  test('exp = 2^63-1 with a leeway: accepted, expiring at 2^63-1, and the server lives on', async () => {
    // exp + leeway overflowed a signed addition: the sanitizer build aborted on this token.
    const t = jwt('{"sub":"zed","exp":9223372036854775807,"nbf":-9223372036854775808}');
    const c = await HubClient.connect(srv.port, bearer(t));
    const [id, , exp] = await raw(c);
    assert.equal(id, 'zed');
    assert.equal(exp, '9223372036854775807');
    const d = await HubClient.connect(srv.port, { protocols: `sb.v1, bearer.${t}` });
    assert.equal((await raw(d))[0], 'zed');
    for (const x of [c, d]) x.destroy();
    assert.equal(srv.sanitizerReport(), null);
  });

  test('the leeway is added to the expiry of the connection', async () => {
    const exp = now() - 10;
    const c = await HubClient.connect(srv.port, bearer(jwt({ sub: 'yan', exp })));
    assert.equal((await raw(c))[2], String(exp + 30));
    c.destroy();
  });

  const soon = () => now() + 600;
  const refusedClaims = [
    ['a string nbf naming the far future', () => `{"sub":"x","exp":${soon()},"nbf":"4102444800"}`, 'nbf claim is not a number'],
    ['a string exp', () => '{"sub":"x","exp":"4102444800"}', 'exp claim is not a number'],
    ['a boolean nbf', () => `{"sub":"x","exp":${soon()},"nbf":true}`, 'nbf claim is not a number'],
    ['an object iat', () => `{"sub":"x","exp":${soon()},"iat":{}}`, 'iat claim is not a number'],
    ['an exp past int64', () => '{"sub":"x","exp":1e300}', 'exp claim out of range'],
    ['a fractional nbf after now and the leeway', () => `{"sub":"x","exp":${soon()},"nbf":${now() + 120}.5}`, 'token not yet valid'],
  ];
  for (const [name, payload, why] of refusedClaims) {
    test(`refused with 401: ${name}`, async () => {
      const r = await rejected(srv.port, bearer(jwt(payload())));
      assert.equal(r.status, 401);
      assert.equal(r.body, why);
      assert.match(r.header('www-authenticate'), new RegExp(`error_description="${why}"`));
    });
  }

  test('a fractional exp is taken down to the second', async () => {
    const exp = now() + 600;
    const c = await HubClient.connect(srv.port, bearer(jwt(`{"sub":"xia","exp":${exp}.75}`)));
    assert.equal((await raw(c))[2], String(exp + 30));
    c.destroy();
  });
});

// A browser sends a site's cookies with a WebSocket opened by a page of any site: the cookie
// token counts only when the Origin is trusted (listed, or the server's own when no list is set).
describe('the sb_token cookie and the Origin', () => {
  let open;
  let listed;
  before(async () => {
    open = await start(['--jwt-hs256', SECRET]);
    listed = await start(['--jwt-hs256', SECRET, '--origins', 'https://app.example,http://other.example:8080']);
  });
  const cookie = (sub) => ['Cookie', `theme=dark; sb_token=${jwt({ sub, exp: now() + 600 })}`];
  const origin = (o) => ['Origin', o];
  const who = async (port, extra) => {
    const c = await HubClient.connect(port, { extra });
    const [id] = (await c.ok('/identity', '', { method: METHOD.GET })).split('|');
    c.destroy();
    return id;
  };

  test('no list: a cookie with a foreign Origin is not a token (401, token required)', async () => {
    for (const o of ['https://evil.example', `http://localhost:${open.port}`, `http://127.0.0.1:${open.port + 1}`,
      `https://127.0.0.1:${open.port}.evil.example`, 'null']) {
      const r = await rejected(open.port, { extra: [origin(o), cookie('victim')] });
      assert.equal(r.status, 401, o);
      assert.equal(r.body, 'token required', o);
      assert.equal(r.header('www-authenticate'), 'Bearer', o);
    }
  });

  test('no list: a cookie with the server\'s own Origin, or with none, is the token (101)', async () => {
    assert.equal(await who(open.port, [origin(`http://127.0.0.1:${open.port}`), cookie('carol')]), 'carol');
    assert.equal(await who(open.port, [origin(`HTTP://127.0.0.1:${open.port}`), cookie('carol')]), 'carol');
    assert.equal(await who(open.port, [cookie('dan')]), 'dan');
  });

  test('no list: a foreign page that holds a token sends it itself, and is accepted', async () => {
    // Not ambient: a page can only send a token it was given.
    const t = jwt({ sub: 'eve', exp: now() + 600 });
    assert.equal(await who(open.port, [origin('https://evil.example'), ['Authorization', `Bearer ${t}`]]), 'eve');
    const c = await HubClient.connect(open.port, { protocols: `sb.v1, bearer.${t}`, extra: [origin('https://evil.example')] });
    assert.equal((await c.ok('/identity', '', { method: METHOD.GET })).split('|')[0], 'eve');
    c.destroy();
  });

  test('a list: a cookie with a listed Origin, or with none, is the token (101)', async () => {
    assert.equal(await who(listed.port, [origin('https://app.example'), cookie('fay')]), 'fay');
    assert.equal(await who(listed.port, [origin('http://other.example:8080'), cookie('gus')]), 'gus');
    assert.equal(await who(listed.port, [cookie('hal')]), 'hal');
  });

  test('a list: the server\'s own Origin is not on it (403), nor another', async () => {
    for (const o of [`http://127.0.0.1:${listed.port}`, 'https://evil.example']) {
      const r = await rejected(listed.port, { extra: [origin(o), cookie('victim')] });
      assert.equal(r.status, 403, o);
      assert.equal(r.body, 'origin not allowed', o);
    }
  });
});

// The 101 is sized from its parts: a long subprotocol is answered (it once did not fit a
// 512-byte buffer, and the connection was closed without a response).
describe('a long subprotocol', () => {
  const long = (n, c = 'p') => `sb.${c.repeat(n - 3)}`;

  test('chosen beside a bearer entry (no hook): 2000 and 12000 bytes, echoed in the 101', async () => {
    const srv = await start(['--jwt-hs256', SECRET]);
    for (const n of [2000, 12000]) {
      const p = long(n);
      const c = await HubClient.connect(srv.port, { protocols: `${p}, bearer.${jwt({ sub: 'lou', exp: now() + 600 })}, sb.v1` });
      assert.equal(c.head.status, 101);
      assert.equal(c.head.header('sec-websocket-protocol'), p, `${n} bytes`);
      assert.equal((await identity(c)).id, 'lou');
      c.destroy();
    }
  });

  test('chosen by the on_subprotocol hook (echo --subprotocols): 2000 and 12000 bytes', async () => {
    const a = long(2000, 'a');
    const b = long(12000, 'b');
    const srv = await startEcho(['--subprotocols', `${a},${b}`]);
    try {
      for (const p of [a, b]) {
        const r = await httpExchange(srv.port, upgradeRequest({ protocols: `x, ${p}` }), { waitClose: false, timeoutMs: 3000 });
        assert.match(r.statusLine, /^HTTP\/1\.1 101 /, `${p.length} bytes`);
        assert.equal(r.header('sec-websocket-protocol'), p);
      }
      // and the first real one beside a bearer entry, without the hook choosing
      const r = await httpExchange(srv.port, upgradeRequest({ protocols: `${b}, bearer.t` }), { waitClose: false, timeoutMs: 3000 });
      assert.match(r.statusLine, /^HTTP\/1\.1 101 /);
      assert.equal(r.header('sec-websocket-protocol'), b);
      assert.equal(srv.sanitizerReport(), null);
    } finally {
      await srv.stop();
    }
  });
});
