-- tops: the epoch and head of several streams at once, read only (the node's check that it
-- has delivered everything: a message lost between Redis and the node is found even when
-- nothing follows it).
--
-- KEYS[1..n]  P{E(S)}:m     the streams' metadata
--
-- Reply: flat, per key: epoch (bulk; "" when the stream has no metadata), head (integer; 0).
--
-- Effects: none (no epoch is made, no TTL refreshed: a stream the check finds missing is left
-- to the node's next publish, read or position, which make one).
--
-- Redis Cluster: the keys are of several streams (several slots): a cluster groups the calls
-- by slot.

local out = {}
for i = 1, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'e', 'h')
  out[#out + 1] = cur[1] or ''
  out[#out + 1] = tonumber(cur[2]) or 0
end
return out
