-- nodes: the live nodes and the urls they advertise (the clients' discovery list).
--
-- KEYS[1]  Pnodes             the live nodes (ZSET node id → heartbeat deadline, ms)
-- ARGV[1]  P                  the key prefix
-- ARGV[2]  now                ms since 1970
--
-- Reply: flat {id, url, id, url, ...}: the nodes whose deadline has not passed, soonest
-- deadline first; url "" when a node advertised none (or its info hash just expired).
--
-- Effects: none (reads only). Atomic: the list and the urls are one state of Redis.
--
-- Redis Cluster: the info hashes are built here (other slots).

local P = nonempty(ARGV[1], 'the prefix')
local now = uint(ARGV[2], 'now')
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], fmt(now), '+inf')) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', node_info(P, id), 'url') or ''
end
return out
