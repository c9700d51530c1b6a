-- session_open: a connection opens (or a node re-registers) the session <connid>.
--
-- KEYS[1]  P{s:<connid>}    the session (HASH i, n, g, c, t)
-- KEYS[2]  P{s:<connid>}:g  its groups (HASH group → "<offset>:<epoch>")
-- KEYS[3]  Pclosed          the closed sessions (ZSET connid → closed-at ms)
-- ARGV[1]  P                the key prefix
-- ARGV[2]  connid           the connection id
-- ARGV[3]  identity         "" when anonymous; kept from the first open
-- ARGV[4]  node             this node's id
-- ARGV[5]  expected         "": open (a new connection, or one that adopts the session);
--                           a generation: re-register a session this node held with that
--                           generation (after a Redis reconnect, or after node_heartbeat
--                           answered 1), see below
--
-- Reply: the session's generation (integer) that the connection now holds; or nil when
-- `expected` was given and the session is held by another node or generation (it was
-- resumed elsewhere meanwhile: the node closes its connection with 4000); or {1, "new"} when
-- `expected` was given and the session was missing (Redis lost it): it was made anew, and
-- the node records its groups and token again (they were lost with it).
--
-- Effects:
--   new session: i = identity, n = node, g = 1, c = 0, t = "".
--   existing, expected = "": g + 1 (the fence: whatever held it before is stale), n = node,
--     c = 0; if it was open (c = 0) on another node, PUBLISH "k<connid>:<g>" to that node's
--     channel (its connection must close). Open on this node: it is this node's own open
--     again (the first one's answer was lost), and nothing is published.
--   existing, expected = its g and n = node: c = 0, g unchanged (the same connection holds it
--     on; a session that node_expire closed is taken back; a pending take of this node is
--     confirmed: its token is deleted and p cleared, see session_take).
--   missing, expected given: made anew as a new session (Redis lost it; the connection is
--     still open), generation 1, with the identity given (the node passes the one it
--     kept), and the reply says so.
-- In all cases: no TTL on the session's keys, its token and its direct stream while it is
-- open; out of Pclosed; in the node's set P{node:<node>}:s (and out of the previous node's).
--
-- Atomic: the generation bump and the move are one step, so two opens of one session leave
-- exactly one holder with the newest generation. Generations are counted with HINCRBY and
-- stay far below 2^53.
--
-- Redis Cluster: the node sets, the node channel, the token and the direct stream keys are
-- built here and are in other slots.

local P = ARGV[1]
local id = nonempty(ARGV[2], 'the connection id')
local identity = ARGV[3] or ''
local node = nonempty(ARGV[4], 'the node id')
local expected = ARGV[5] or ''
if expected ~= '' then uint(expected, 'the expected generation') end
local s, closed = KEYS[1], KEYS[3]

local cur = redis.call('HMGET', s, 'n', 'g', 'c')
if not cur[2] then
  redis.call('HSET', s, 'i', identity, 'n', node, 'g', '1', 'c', '0', 't', '')
  hold_session(P, closed, id, nil, node)
  if expected ~= '' then return {1, 'new'} end
  return 1
end

local gen
if expected ~= '' then
  if cur[1] ~= node or cur[2] ~= expected then return false end
  gen = tonumber(expected)
  -- A take this node made is confirmed: its token is spent for good (session_take,
  -- "Pending takes"), and the session's keys lose their TTL below.
  local p = redis.call('HGET', s, 'p')
  if p and p ~= '' then
    redis.call('DEL', token_key(P, p))
    redis.call('HDEL', s, 'p', 'pt')
  end
else
  gen = redis.call('HINCRBY', s, 'g', 1)
end
redis.call('HSET', s, 'n', node, 'c', '0')
hold_session(P, closed, id, cur[1], node)
-- Not to this node itself: an open of a session this node holds open is its own earlier open
-- whose answer was lost (a command timeout; the node opens it again after the reconnect), and
-- a message to itself would close the very connection it is for.
if expected == '' and cur[3] == '0' and cur[1] and cur[1] ~= node then
  redis.call('PUBLISH', node_channel(P, cur[1]), 'k' .. id .. ':' .. fmt(gen))
end
return gen
