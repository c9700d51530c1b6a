-- session_take: takes a resume token and moves its session to this node (a RESUME).
--
-- KEYS[1]  P{t:<token>}     the token (STRING → connid)
-- KEYS[2]  Pclosed          the closed sessions
-- ARGV[1]  P                the key prefix
-- ARGV[2]  token            the token, as in KEYS[1] before escaping
-- ARGV[3]  identity         the identity presenting the token ("" when anonymous)
-- ARGV[4]  node             this node's id
-- ARGV[5]  now              ms since 1970
-- ARGV[6]  session_ttl_ms   a closed session older than this is gone (even if Redis has not
--                           expired it yet: the callers' clock decides, as in the memory engine)
-- ARGV[7]  retry_after_ms   optional: a take of this token that its node has not confirmed
--                           for this long may be made again (see "Pending takes"); absent: never
--
-- Reply, one of:
--   {"ok", connid, identity, previous node, previous generation (integer),
--    generation (integer), groups}
--      groups is flat: name, offset (bulk), epoch (bulk, "0": unknown), name, ...
--   {"notfound"}   no such token: unknown, already used, or its session expired or evicted
--   {"identity"}   the session belongs to another identity; the token is left as it was,
--                  so that its owner can still use it
--   {"pending"}    (only with retry_after) taken less than retry_after ago and not confirmed
--                  yet: retry later
--
-- Effects (ok): t = "", p = the token, pt = now (a pending take); g + 1; n = node; c = 0; out
-- of Pclosed; moved from the previous node's set to this node's; the session's keys and the
-- token expire session_ttl_ms from now (not persisted: see "Pending takes"). If the session was
-- open (c = 0) the previous holder's connection must close: PUBLISH "k<connid>:<g>" to the
-- previous node's channel P{node:<previous>}, unless that is this node (its hub closes the
-- local holder itself).
-- A token whose session is gone, or that its session no longer names, is deleted (notfound).
--
-- Pending takes. The node that took the session confirms it with session_open and the new
-- generation once its connection holds it; that deletes the token and clears p, and the
-- session's keys lose their TTL (an open session has none). Until then the take is pending:
-- if its answer never reached its node (a command timeout while Redis stalled: the node told
-- the client "retry" and the script ran later), the session expires like a closed one instead
-- of staying open on a node that does not know it, and the client's retry with the same
-- token, at least retry_after_ms after the take, takes it again. A second take sooner than
-- that is refused as before (notfound), so of two RESUMEs racing with one token one wins.
--
-- Atomic: the identity check, the token's deletion and the move are one step, so of two
-- RESUMEs racing with one token exactly one gets "ok" and the other "notfound", and a refused
-- identity never spends the token. Generations and times are below 2^53; positions and
-- epochs are copied as text.
--
-- Redis Cluster: the session's keys are found through the token and built here (another
-- slot); a cluster needs the connection id inside the token (e.g. "<connid>.<secret>") so that
-- the node can pass them in KEYS.

local P = ARGV[1]
local tok = nonempty(ARGV[2], 'the token')
local identity = ARGV[3] or ''
local node = nonempty(ARGV[4], 'the node id')
local now = uint(ARGV[5], 'now')
local ttl = uint(ARGV[6], 'session_ttl_ms')
local retry_after = ARGV[7] and uint(ARGV[7], 'retry_after_ms') or nil
local tk, closed = KEYS[1], KEYS[2]

local id = redis.call('GET', tk)
if not id then return {'notfound'} end
local s = session_key(P, id)
local cur = redis.call('HMGET', s, 'i', 'n', 'g', 'c', 't', 'p', 'pt')
local pending = cur[6] == tok
if not cur[3] or (cur[5] ~= tok and not pending) then
  redis.call('DEL', tk)
  return {'notfound'}
end
if pending and not (retry_after and now - (tonumber(cur[7]) or now) >= retry_after) then
  -- Taken just now and not confirmed yet. Without retry_after: notfound (the token is as good
  -- as spent). With it: "pending", which the node answers with "retry" (503): a client whose
  -- own take's answer was lost may come back sooner than retry_after (its link dropped for an
  -- older command's timeout), and must not lose its session for that; of two racing RESUMEs
  -- the loser retries after the winner's confirmation spent the token, and gets notfound.
  if retry_after then return {'pending'} end
  return {'notfound'}
end
local c = tonumber(cur[4]) or 0
if c ~= 0 and ttl > 0 and now - c > ttl then
  redis.call('ZREM', closed, id)
  drop_session(P, id)
  return {'notfound'}
end
if cur[1] ~= identity then return {'identity'} end

local gen = redis.call('HINCRBY', s, 'g', 1)
redis.call('HSET', s, 't', '', 'p', tok, 'pt', fmt(now), 'n', node, 'c', '0')
hold_session(P, closed, id, cur[2], node)
if ttl > 0 then -- until the taker confirms (pending takes, above)
  for _, k in ipairs(session_all_keys(P, id, tok)) do redis.call('PEXPIRE', k, ttl) end
end
-- Not when the holder is this node: its hub closes a local holder itself, and a message to
-- itself could race the reply and close the very connection that resumed.
if c == 0 and cur[2] and cur[2] ~= node then
  redis.call('PUBLISH', node_channel(P, cur[2]), 'k' .. id .. ':' .. fmt(gen))
end
local groups = {}
local all = redis.call('HGETALL', s .. ':g')
for i = 1, #all, 2 do
  local o, e = string.match(all[i + 1], '^(%d+):(%d+)$')
  groups[#groups + 1] = all[i]
  groups[#groups + 1] = o or '0'
  groups[#groups + 1] = e or '0'
end
return {'ok', id, cur[1], cur[2], tonumber(cur[3]), gen, groups}
