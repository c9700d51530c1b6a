// Url patterns for listeners, in the syntax of the server's routes (docs/API.md, "Routes"):
// literal segments, `:name` parameters (one segment each), and a last `*` or `*name` tail that
// takes zero or more segments. A trailing `/` is ignored on both sides; the query string of a
// url is not part of the match; segments are percent-decoded before they are compared, and
// parameters are given decoded. Unlike the router, a listener does not compete with the other
// listeners: every listener whose pattern matches gets the push.

/**
 * Compiles `pattern` into a function url → { params, query } or null. Throws a TypeError for a
 * pattern that does not start with `/` or has a tail before its last segment.
 */
export function compilePattern(pattern) {
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) {
    throw new TypeError(`a url pattern starts with "/", got ${JSON.stringify(pattern)}`);
  }
  const parts = split(pattern).map((seg, i, all) => {
    if (seg.startsWith('*')) {
      if (i !== all.length - 1) throw new TypeError(`${pattern}: a tail (*) may only be the last segment`);
      return { tail: seg.slice(1) || '*' };
    }
    if (seg.startsWith(':')) {
      if (seg.length === 1) throw new TypeError(`${pattern}: a parameter needs a name`);
      return { param: seg.slice(1) };
    }
    return { literal: seg };
  });
  return (url) => {
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    let segs;
    try {
      segs = split(path).map(decodeURIComponent);
    } catch {
      return null; // a malformed escape matches nothing
    }
    const params = {};
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (p.tail !== undefined) {
        params[p.tail] = segs.slice(i).join('/');
        return { params, query: q < 0 ? '' : url.slice(q + 1) };
      }
      if (i >= segs.length) return null;
      if (p.literal !== undefined ? p.literal !== segs[i] : segs[i] === '') return null;
      if (p.param !== undefined) params[p.param] = segs[i];
    }
    if (segs.length !== parts.length) return null;
    return { params, query: q < 0 ? '' : url.slice(q + 1) };
  };
}

// "/a/b/" → ["a", "b"]; "/" → [].
function split(path) {
  const segs = path.split('/').slice(1);
  if (segs.length && segs[segs.length - 1] === '') segs.pop();
  return segs;
}
