-- trim: drops a stream's history up to and including an offset (acknowledged messages).
--
-- KEYS[1]  P{E(S)}:m        the stream's metadata
-- KEYS[2]  P{E(S)}:x        its history
-- ARGV[1]  through          the last offset to drop (decimal u64; above the head: the head)
-- ARGV[2]  epoch            the epoch `through` belongs to; "" to trim whatever epoch
--
-- Reply: the number of entries deleted (integer); 0 when the stream has no metadata or
-- another epoch (an offset of an older epoch means nothing now: nothing is trimmed).
--
-- Effects: XTRIM MINID through + 1. No epoch is made and no TTL touched: trimming is not a
-- sign of life (the ACK that causes it comes with a read or position of the same stream).
--
-- Atomic: the epoch check and the trim are one step, so a trim cannot hit a new epoch that
-- was made between a position call and a trim call. The epoch is compared as text.

local through
if type(ARGV[1]) == 'string' and #ARGV[1] > 16 and string.match(ARGV[1], '^%d+$') then
  through = MAX_SAFE + 1
else
  through = uint(ARGV[1], 'through')
end
local want = ARGV[2] or ''
if want ~= '' then epoch_arg(want, 'the epoch') end
local m, x = KEYS[1], KEYS[2]

local cur = redis.call('HMGET', m, 'e', 'h')
if not cur[1] or (want ~= '' and cur[1] ~= want) then return 0 end
local head = tonumber(cur[2]) or 0
if through > head then through = head end
if through < 1 then return 0 end
return redis.call('XTRIM', x, 'MINID', fmt(through + 1))
