-- session_closed: the connection holding a session closed; the session becomes resumable.
--
-- KEYS[1]  P{s:<connid>}    the session
-- KEYS[2]  P{s:<connid>}:g  its groups
-- KEYS[3]  Pclosed          the closed sessions (ZSET connid → closed-at ms)
-- ARGV[1]  P                the key prefix
-- ARGV[2]  connid           the connection id
-- ARGV[3]  node             the node whose connection closed
-- ARGV[4]  generation       the generation that connection held (decimal)
-- ARGV[5]  now              ms since 1970: the closed-at time
-- ARGV[6]  session_ttl_ms   a closed session lives this long
-- ARGV[7]  max_closed       at most this many closed sessions are kept (0: no limit)
--
-- Reply: 1 closed; 0 ignored, because another node or a newer generation holds the session
-- (it was resumed elsewhere: this late close must not start the clock on the session its new
-- holder has); nil when there is no such session.
--
-- Effects: c = now; the session's keys, its token and its direct stream expire session_ttl_ms
-- from now, its groups' streams at least that late (_common.lua close_session); ZADD to
-- Pclosed; out of the node's set P{node:<node>}:s; then closed sessions past their age and
-- past max_closed are dropped, oldest first (all their keys deleted).
--
-- Atomic: the fence check (n and g) and the close are one step, so a take that moves the
-- session cannot fall between them. Times and generations are below 2^53.
--
-- Redis Cluster: the token, direct stream, group stream and node set keys and the dropped
-- sessions' keys are built here and are in other slots.

local P = ARGV[1]
local id = nonempty(ARGV[2], 'the connection id')
local node = nonempty(ARGV[3], 'the node id')
local gen = ARGV[4]
uint(gen, 'the generation')
local now = uint(ARGV[5], 'now')
local ttl = uint(ARGV[6], 'session_ttl_ms')
local max = uint(ARGV[7], 'max_closed')
local s, closed = KEYS[1], KEYS[3]

local cur = redis.call('HMGET', s, 'n', 'g')
if not cur[2] then return false end
if cur[1] ~= node or cur[2] ~= gen then return 0 end
close_session(P, closed, id, now, now, ttl)
redis.call('SREM', node_set(P, node), id)
evict(P, closed, now, ttl, max)
return 1
