-- node_heartbeat: registers a node or refreshes its registration.
--
-- KEYS[1]  Pnodes             the live nodes (ZSET node id → heartbeat deadline, ms)
-- KEYS[2]  P{node:<id>}:i     the node's info (HASH url, started)
-- ARGV[1]  node               the node's id
-- ARGV[2]  url                its advertised public url
-- ARGV[3]  started            when it started (ms since 1970)
-- ARGV[4]  now                ms since 1970
-- ARGV[5]  node_ttl_ms        dead unless it beats again within this (> 0)
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
-- Redis Cluster: Pnodes and the info hash are in different slots.

local id = nonempty(ARGV[1], 'the node id')
local url = ARGV[2] or ''
local started = uint(ARGV[3], 'started')
local now = uint(ARGV[4], 'now')
local ttl = uint(ARGV[5], 'node_ttl_ms')
if ttl == 0 then fail('node_ttl_ms must be at least 1') end
local nodes, info = KEYS[1], KEYS[2]

local old = tonumber(redis.call('ZSCORE', nodes, id))
redis.call('ZADD', nodes, fmt(now + ttl), id)
redis.call('HSET', info, 'url', url, 'started', fmt(started))
redis.call('PEXPIRE', info, ttl)
if old and old >= now then return 0 end
return 1
