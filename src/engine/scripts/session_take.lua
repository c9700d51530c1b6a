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
--
-- Reply, one of:
--   {"ok", connid, identity, previous node, previous generation (integer),
--    generation (integer), groups}
--      groups is flat: name, offset (bulk), epoch (bulk, "0": unknown), name, ...
--   {"notfound"}   no such token: unknown, already used, or its session expired or evicted
--   {"identity"}   the session belongs to another identity; the token is left as it was,
--                  so that its owner can still use it
--
-- Effects (ok): the token is deleted and t = ""; g + 1; n = node; c = 0; no TTLs while
-- open; out of Pclosed; moved from the previous node's set to this node's. If the session was
-- open (c = 0) the previous holder's connection must close: PUBLISH "k<connid>:<g>" to the
-- previous node's channel P{node:<previous>}, unless that is this node (its hub closes the
-- local holder itself).
-- A token whose session is gone, or that its session no longer names, is deleted (notfound).
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
local tk, closed = KEYS[1], KEYS[2]

local id = redis.call('GET', tk)
if not id then return {'notfound'} end
local s = session_key(P, id)
local cur = redis.call('HMGET', s, 'i', 'n', 'g', 'c', 't')
if not cur[3] or cur[5] ~= tok then
  redis.call('DEL', tk)
  return {'notfound'}
end
local c = tonumber(cur[4]) or 0
if c ~= 0 and ttl > 0 and now - c > ttl then
  redis.call('ZREM', closed, id)
  drop_session(P, id)
  return {'notfound'}
end
if cur[1] ~= identity then return {'identity'} end

redis.call('DEL', tk)
local gen = redis.call('HINCRBY', s, 'g', 1)
redis.call('HSET', s, 't', '', 'n', node, 'c', '0')
hold_session(P, closed, id, cur[2], node)
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
