// Listener url patterns, in the syntax of the server's routes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePattern } from '../patterns.js';

const match = (p, url) => compilePattern(p)(url);

test('literals, parameters and tails', () => {
  assert.deepEqual(match('/rooms', '/rooms'), { params: {}, query: '' });
  assert.equal(match('/rooms', '/rooms/1'), null);
  assert.equal(match('/rooms/1', '/rooms'), null);
  assert.deepEqual(match('/rooms/:id/messages', '/rooms/lobby/messages').params, { id: 'lobby' });
  assert.equal(match('/rooms/:id/messages', '/rooms//messages'), null, 'a parameter is never empty');
  assert.deepEqual(match('/files/*path', '/files/a/b/c').params, { path: 'a/b/c' });
  assert.deepEqual(match('/files/*path', '/files').params, { path: '' }, 'a tail takes zero or more segments');
  assert.deepEqual(match('/files/*', '/files/x').params, { '*': 'x' });
  assert.deepEqual(match('/*', '/anything/at/all').params, { '*': 'anything/at/all' });
  assert.deepEqual(match('/', '/'), { params: {}, query: '' });
});

test('trailing slashes, queries and percent-decoding', () => {
  assert.ok(match('/rooms/', '/rooms'));
  assert.ok(match('/rooms', '/rooms/'));
  assert.deepEqual(match('/rooms/:id', '/rooms/7?since=3&x=%20'), { params: { id: '7' }, query: 'since=3&x=%20' });
  assert.deepEqual(match('/rooms/:id', '/rooms/caf%C3%A9').params, { id: 'café' });
  assert.ok(match('/a b', '/a%20b'), 'literals are compared with the decoded segment');
  assert.deepEqual(match('/rooms/:id', '/rooms/a%2Fb').params, { id: 'a/b' }, 'an escaped slash stays in its segment');
  assert.equal(match('/rooms/:id', '/rooms/%E0%A4%A'), null, 'a malformed escape matches nothing');
});

test('bad patterns are refused', () => {
  assert.throws(() => compilePattern('rooms'), /starts with "\/"/);
  assert.throws(() => compilePattern('/a/*/b'), /last segment/);
  assert.throws(() => compilePattern('/a/:'), /needs a name/);
});
