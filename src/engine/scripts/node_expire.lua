-- node_expire: removes the nodes whose heartbeat deadline has passed, and closes the sessions
-- their connections held, so that those expire (and are resumable elsewhere meanwhile).
--
-- KEYS[1]  Pnodes             the live nodes (ZSET node id → deadline, ms)
-- KEYS[2]  Pclosed            the closed sessions
-- ARGV[1]  P                  the key prefix
-- ARGV[2]  now                ms since 1970
-- ARGV[3]  session_ttl_ms     a closed session lives this long
-- ARGV[4]  max_closed         at most this many closed sessions are kept (0: no limit)
-- ARGV[5]  limit              close at most this many sessions in this call (>= 1)
--
-- Reply: {removed, closed, more}: removed is an array of the node ids taken out of Pnodes
-- (their channels are dead: the caller forgets them, drops their presence, ...), closed the
-- number of sessions closed (integer), more 1 when a dead node is left for another call
-- (call again at once), else 0.
--
-- How a dead node's sessions are found: every session a node holds open is in the SET
-- P{node:<id>}:s (session_open and session_take add it, session_closed and a take by
-- another node remove it). Here each member whose session still names the dead node as its
-- holder and is open is closed as of the node's deadline (the moment it was known dead):
-- c = deadline, TTLs of session_ttl_ms from then, into Pclosed (_common.lua close_session).
-- Members resumed elsewhere meanwhile are skipped. A node leaves Pnodes (and its set and info
-- go) only once its set is empty: a large node is swept over several calls of at most `limit`
-- sessions each, so one call never blocks Redis for long. Then the closed-session cap.
--
-- Presence goes the same way, after the sessions: every group in the dead node's set
-- P{node:<id>}:p loses the node's memberships (presence.lua), and each identity whose last
-- connection that was gets its leave event; each membership counts against `limit`.
--
-- Any node may call it (about once a second); two calls at once do no harm: each session is
-- popped from the set by one of them. A node that was only late and beats again keeps its
-- place (node_heartbeat answers 1 and it re-registers what is left).
--
-- Atomic: each session is checked and closed in one step with the removal from the set, so a
-- take of one of these sessions either came first (skipped here) or comes after (and takes a
-- closed session). Times are below 2^53.
--
-- Redis Cluster: the node sets, info hashes, session and presence keys are built here (other
-- slots).

local P = ARGV[1]
local now = uint(ARGV[2], 'now')
local ttl = uint(ARGV[3], 'session_ttl_ms')
local max = uint(ARGV[4], 'max_closed')
local budget = uint(ARGV[5], 'limit')
if budget == 0 then fail('limit must be at least 1') end
local nodes, closed = KEYS[1], KEYS[2]

local removed, nclosed = {}, 0
local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. fmt(now), 'WITHSCORES',
                       'LIMIT', 0, 16)
for i = 1, #dead, 2 do
  local id, deadline = dead[i], tonumber(dead[i + 1])
  local set = node_set(P, id)
  while budget > 0 do
    local batch = redis.call('SPOP', set, budget < 100 and budget or 100)
    if #batch == 0 then break end
    budget = budget - #batch
    for _, cid in ipairs(batch) do
      local cur = redis.call('HMGET', session_key(P, cid), 'n', 'c')
      if cur[1] == id and cur[2] == '0' then
        close_session(P, closed, cid, deadline, now, ttl)
        nclosed = nclosed + 1
      end
    end
  end
  if redis.call('SCARD', set) > 0 then break end
  -- Its presence: every membership it had leaves (with the leave events), group by group.
  local pset = node_presence(P, id)
  while budget > 0 do
    local groups = redis.call('SPOP', pset, 16)
    if #groups == 0 then break end
    for _, S in ipairs(groups) do
      local mine, counts = presence_mine(P, S, id), presence_counts(P, S)
      local members = redis.call('HKEYS', mine)
      for _, m in ipairs(members) do presence_remove(mine, counts, stream_base(P, S), m) end
      budget = budget - #members
    end
  end
  if redis.call('SCARD', pset) > 0 then break end
  redis.call('ZREM', nodes, id)
  redis.call('DEL', set, node_info(P, id))
  removed[#removed + 1] = id
end
evict(P, closed, now, ttl, max)
local more = redis.call('ZCOUNT', nodes, '-inf', '(' .. fmt(now)) > 0 and 1 or 0
return {removed, nclosed, more}
