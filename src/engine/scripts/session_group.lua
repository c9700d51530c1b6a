-- session_group: a session joins or leaves a group (its join position is recorded).
--
-- KEYS[1]  P{s:<connid>}      the session
-- KEYS[2]  P{s:<connid>}:g    its groups (HASH group → "<offset>:<epoch>")
-- KEYS[3]  P{E(g:<group>)}:m  the group stream's metadata (read only when epoch is "0")
-- KEYS[4]  P{E(g:<group>)}:x  its history (a new epoch deletes it; TTL)
-- ARGV[1]  P                  the key prefix
-- ARGV[2]  group              the group name (the stream is "g:<group>")
-- ARGV[3]  joined             "1": joined, "0": left
-- ARGV[4]  offset             the join position (decimal u64) ...
-- ARGV[5]  epoch              ... and its epoch; "0": unknown, take the stream's own
--                             position now (an asynchronous engine has no position at hand)
-- ARGV[6]  epoch candidate    for the stream, used only if it needs a new epoch
-- ARGV[7]  run_id             Redis' run_id as the node read it at connect
-- ARGV[8]  stream_ttl_ms      the group stream's keys expire after this (0: never)
--
-- Reply: joined: {offset (bulk), epoch (bulk)}, the join position the session keeps (the
-- first one: joining again keeps it); left: 1 if the session had the group, else 0; nil
-- when the session does not exist (nothing written).
--
-- Effects: joined: HSETNX of the position, and the group stream's TTLs refreshed (the session
-- holds a position in it); if the session is closed (it has a TTL) its groups hash keeps the
-- same TTL. left: HDEL.
--
-- Atomic: the position read from the stream and the one recorded are one state. Offset and
-- epoch are only copied as text (the offset given by the hub may be any u64).
--
-- Redis Cluster: KEYS[3] and KEYS[4] are in the group stream's slot, not the session's; a
-- cluster needs the hub to pass a known position (or a separate position call first).

local P = ARGV[1]
local group = nonempty(ARGV[2], 'the group')
local joined = ARGV[3]
if joined ~= '0' and joined ~= '1' then fail('joined must be 0 or 1') end
local offset, epoch = ARGV[4], ARGV[5]
if type(offset) ~= 'string' or #offset == 0 or #offset > 20 or
    not string.match(offset, '^%d+$') then
  fail('the offset must be a decimal u64')
end
if epoch ~= '0' then epoch_arg(epoch, 'the epoch') end
local cand = epoch_arg(ARGV[6], 'the epoch candidate')
local run_id = nonempty(ARGV[7], 'the run_id')
local ttl = uint(ARGV[8], 'stream_ttl_ms')
local s, sg = KEYS[1], KEYS[2]

if redis.call('EXISTS', s) == 0 then return false end
if joined == '0' then return redis.call('HDEL', sg, group) end

local kept = redis.call('HGET', sg, group)
if not kept then
  if epoch == '0' then
    local e, head = stream_meta(KEYS[3], KEYS[4], cand, run_id)
    epoch, offset = e, fmt(head)
  end
  kept = offset .. ':' .. epoch
  redis.call('HSET', sg, group, kept)
  local left = redis.call('PTTL', s)
  if left > 0 then redis.call('PEXPIRE', sg, left) end
end
stream_ttl(P, 'g:' .. group, KEYS[3], KEYS[4], ttl) -- nothing if the stream has no keys
local o, e = string.match(kept, '^(%d+):(%d+)$')
return {o, e}
