// The reconnect schedule: exponential caps, full jitter, limits, option checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RECONNECT_DEFAULTS, backoffCap, backoffDelay, reconnectOptions } from '../backoff.js';

test('the caps grow by the factor from the initial delay up to the maximum', () => {
  const caps = Array.from({ length: 10 }, (_, i) => backoffCap(i + 1));
  assert.deepEqual(caps, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  const o = reconnectOptions({ initialDelay: 100, factor: 3, maxDelay: 5000 });
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffCap(n, o)), [100, 300, 900, 2700, 5000]);
  assert.equal(backoffCap(5000, o), 5000, 'no overflow for a very long outage');
  assert.equal(backoffCap(0, o), 0);
});

test('full jitter: a delay is uniform in [0, cap]', () => {
  assert.equal(backoffDelay(3, RECONNECT_DEFAULTS, () => 0), 0);
  assert.equal(backoffDelay(3, RECONNECT_DEFAULTS, () => 0.999999), 2000);
  assert.equal(backoffDelay(3, RECONNECT_DEFAULTS, () => 0.25), 500);
  let sum = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const d = backoffDelay(4, RECONNECT_DEFAULTS);
    assert.ok(d >= 0 && d <= 4000);
    sum += d;
  }
  assert.ok(Math.abs(sum / n - 2000) < 100, `mean ${sum / n} should be near 2000`);
});

test('options are merged over the defaults and checked', () => {
  assert.deepEqual(reconnectOptions({}), RECONNECT_DEFAULTS);
  assert.equal(reconnectOptions({ maxAttempts: 3 }).maxAttempts, 3);
  assert.throws(() => reconnectOptions({ factor: 0.5 }), /factor/);
  assert.throws(() => reconnectOptions({ initialDelay: -1 }), /initialDelay/);
  assert.throws(() => reconnectOptions({ maxDelay: 'soon' }), /maxDelay/);
});
