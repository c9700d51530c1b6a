// Reconnect delays: exponential backoff with full jitter. The n-th consecutive failed attempt
// waits a uniformly random time between 0 and min(maxDelay, initialDelay * factor^(n-1)), so
// that clients that lost the same server at the same moment do not all come back together
// (the "full jitter" of the AWS Architecture Blog's "Exponential Backoff And Jitter").

export const RECONNECT_DEFAULTS = Object.freeze({
  initialDelay: 500, // ms: the cap of the first delay
  factor: 2, // the cap grows by this much per failed attempt
  maxDelay: 30000, // ms: the cap never passes this
  stableAfter: 10000, // ms: a connection open this long resets the attempt count
  maxAttempts: Infinity, // consecutive failed attempts before the client gives up
});

/** The largest delay of attempt `n` (1-based). */
export function backoffCap(n, o = RECONNECT_DEFAULTS) {
  if (!(n >= 1)) return 0;
  // factor^(n-1) overflows to Infinity for large n, and min() then gives maxDelay.
  return Math.min(o.maxDelay, o.initialDelay * o.factor ** (n - 1));
}

/** The delay before attempt `n` (1-based): a whole number of ms in [0, backoffCap(n)]. */
export function backoffDelay(n, o = RECONNECT_DEFAULTS, random = Math.random) {
  return Math.round(random() * backoffCap(n, o));
}

/** The options merged over the defaults, checked; throws a TypeError for a bad value. */
export function reconnectOptions(given = {}) {
  const o = { ...RECONNECT_DEFAULTS, ...given };
  for (const k of Object.keys(RECONNECT_DEFAULTS)) {
    if (typeof o[k] !== 'number' || Number.isNaN(o[k]) || o[k] < 0) throw new TypeError(`reconnect.${k} must be a number >= 0, got ${o[k]}`);
  }
  if (o.factor < 1) throw new TypeError(`reconnect.factor must be at least 1, got ${o.factor}`);
  return o;
}
