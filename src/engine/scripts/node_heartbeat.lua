-- node_heartbeat: registers a node or refreshes its registration.
--
-- KEYS[1]  Pnodes             the live nodes (ZSET node id → heartbeat deadline, ms)
-- KEYS[2]  P{node:<id>}:i     the node's info (HASH url, started)
-- ARGV[1]  node               the node's id
-- ARGV[2]  url                its advertised public url
-- ARGV[3]  started            when it started (ms since 1970)
-- ARGV[4]  now                ms since 1970
-- ARGV[5]  node_ttl_ms        dead unless it beats again within this (> 0)
-- KEYS[3], ARGV[6..8] (optional, a process's first beats until one is answered):
--   KEYS[3] Pclosed, ARGV[6] "1", ARGV[7] P the key prefix, ARGV[8] session_ttl_ms
--
-- A new run of a node id. A node restarted with the same id (a fixed --node-id) before its
-- deadline passed is never swept by node_expire (it beats again in time), so what its previous
-- run held would stay: its open sessions (never closed, so never expiring) and its presence
-- memberships (people shown online for ever). On a process's first beats the node says so; if
-- the info hash names another start time (or is gone: it expired), the previous run's open
-- sessions are closed as of now (resumable for session_ttl_ms, as a dead node's) and its
-- memberships leave every group (with the leave events), before anything of this run is
-- registered (the node's first command after a connect is this beat). The same run's beat
-- again (a first beat that timed out but ran) finds its own start time and sweeps nothing.
--
-- Reply: 0 the node was registered and its deadline had not passed; 1 it was not (its first
-- beat, or it was late: node_expire may have closed its open sessions already, or is about to
-- from any node). On 1 the node re-registers every session it holds with session_open and the
-- generation it holds (those resumed elsewhere meanwhile answer nil: it closes them).
--
-- Effects: ZADD Pnodes now + node_ttl_ms; the info hash is written and expires with the
-- deadline (so a crashed node's info goes by itself; its ZSET entry and session set go with
-- node_expire).
--
-- Atomic: the check of the old deadline and the new one are one step, so a node_expire on
-- another node either ran before (and the answer is 1) or sees the new deadline. Times are
-- below 2^53 (ZSET scores are doubles: exact).
--
-- Redis Cluster: Pnodes and the info hash are in different slots; the sweep of a new run
-- builds the node's sets, its sessions' and its groups' keys (other slots).

local id = nonempty(ARGV[1], 'the node id')
local url = ARGV[2] or ''
local started = uint(ARGV[3], 'started')
local now = uint(ARGV[4], 'now')
local ttl = uint(ARGV[5], 'node_ttl_ms')
if ttl == 0 then fail('node_ttl_ms must be at least 1') end
local first = ARGV[6] == '1'
local P, session_ttl
if first then
  P = nonempty(ARGV[7], 'the key prefix')
  session_ttl = uint(ARGV[8], 'session_ttl_ms')
  if not KEYS[3] then fail('a first beat names Pclosed in KEYS[3]') end
end
local nodes, info = KEYS[1], KEYS[2]

if first and redis.call('HGET', info, 'started') ~= fmt(started) then
  local set = node_set(P, id)
  for _, cid in ipairs(redis.call('SMEMBERS', set)) do
    local cur = redis.call('HMGET', session_key(P, cid), 'n', 'c')
    if cur[1] == id and cur[2] == '0' then close_session(P, KEYS[3], cid, now, now, session_ttl) end
  end
  local pset = node_presence(P, id)
  for _, S in ipairs(redis.call('SMEMBERS', pset)) do
    local mine, counts = presence_mine(P, S, id), presence_counts(P, S)
    for _, m in ipairs(redis.call('HKEYS', mine)) do
      presence_remove(mine, counts, stream_base(P, S), m)
    end
  end
  redis.call('DEL', set, pset)
end

local old = tonumber(redis.call('ZSCORE', nodes, id))
redis.call('ZADD', nodes, fmt(now + ttl), id)
redis.call('HSET', info, 'url', url, 'started', fmt(started))
redis.call('PEXPIRE', info, ttl)
if old and old >= now then return 0 end
return 1
