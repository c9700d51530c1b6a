-- read: a stream's history from an offset, with its epoch and bounds.
--
-- KEYS[1]  P{E(S)}:m        the stream's metadata
-- KEYS[2]  P{E(S)}:x        its history
-- ARGV[1]  P                the key prefix
-- ARGV[2]  S                the stream name
-- ARGV[3]  from             the first offset wanted (decimal u64; past the head: nothing)
-- ARGV[4]  max              at most this many records
-- ARGV[5]  now              ms since 1970
-- ARGV[6]  epoch candidate  used only if the stream needs a new epoch
-- ARGV[7]  run_id           Redis' run_id as the node read it at connect
-- ARGV[8]  history_max      the publishers' history_max
-- ARGV[9]  history_age_ms   the publishers' history_age_ms (0: no age limit)
-- ARGV[10] stream_ttl_ms    an idle stream's keys expire after this (0: never)
--
-- Reply: {epoch (bulk), first (integer), head (integer), records (array)} where records is
-- flat: offset (integer), time (integer), payload (bulk), offset, time, payload, ...
-- head is the last offset given (0: none yet); first the oldest offset still kept (head + 1
-- when none is), and the records are those with offsets >= max(from, first), in order, at
-- most max. Exactly what the memory engine answers: the history shown is the last
-- history_max messages no older than history_age_ms, though publish trims approximately.
--
-- Effects: like publish, a stream whose metadata is missing or was made under another run_id
-- gets a new epoch here (a reader must not be told offsets of lost history under the old
-- epoch); aged entries are deleted; the stream's TTLs are refreshed (a reader is somebody
-- who holds a position in it).
--
-- Atomic: one script, so epoch, first, head and records describe one state of the stream.
-- from may be any u64: above 2^53 it is past every head (heads stay below 2^53).

local P, S = ARGV[1], nonempty(ARGV[2], 'the stream')
local from
if type(ARGV[3]) == 'string' and #ARGV[3] > 16 and string.match(ARGV[3], '^%d+$') then
  from = MAX_SAFE + 1 -- past any head
else
  from = uint(ARGV[3], 'from')
end
local max = uint(ARGV[4], 'max')
local now = uint(ARGV[5], 'now')
local cand = epoch_arg(ARGV[6], 'the epoch candidate')
local run_id = nonempty(ARGV[7], 'the run_id')
local hmax = uint(ARGV[8], 'history_max')
local age = uint(ARGV[9], 'history_age_ms')
local ttl = uint(ARGV[10], 'stream_ttl_ms')
if hmax == 0 then fail('history_max must be at least 1') end
local m, x = KEYS[1], KEYS[2]

local epoch, head = stream_meta(m, x, cand, run_id)
age_trim(x, now, age)
stream_ttl(P, S, m, x, ttl)

local first = head + 1
local oldest = redis.call('XRANGE', x, '-', '+', 'COUNT', 1)
if #oldest > 0 then first = id_offset(oldest[1][1]) end
if head - hmax + 1 > first then first = head - hmax + 1 end

local recs = {}
local start = from > first and from or first
if start <= head and max > 0 then
  local entries = redis.call('XRANGE', x, fmt(start), fmt(head), 'COUNT', max)
  for _, en in ipairs(entries) do
    recs[#recs + 1] = id_offset(en[1])
    recs[#recs + 1] = tonumber(en[2][2]) -- fields t, <time>, d, <payload>
    recs[#recs + 1] = en[2][4]
  end
end
return {epoch, first, head, recs}
