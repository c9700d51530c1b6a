-- publish: numbers a message, stores it in its stream's history and publishes it.
--
-- KEYS[1]  P{E(S)}:m        the stream's metadata (HASH e, h, r)
-- KEYS[2]  P{E(S)}:x        its history (STREAM)
-- KEYS[3]  P{s:<connid>}    only for a direct message (S = "c:<connid>"): its session
-- ARGV[1]  P                the key prefix ("sb:")
-- ARGV[2]  S                the stream name ("g:<group>" or "c:<connid>")
-- ARGV[3]  payload          the hub's bytes (any bytes)
-- ARGV[4]  now              ms since 1970 (the node's clock), stored as the message's time
-- ARGV[5]  epoch candidate  a fresh random u64 in decimal, used only if a new epoch is needed
-- ARGV[6]  run_id           Redis' run_id as the node read it at connect (INFO server)
-- ARGV[7]  history_max      messages kept (>= 1; trimmed with MAXLEN ~, see below)
-- ARGV[8]  history_age_ms   and for at most this long (0: no age limit)
-- ARGV[9]  stream_ttl_ms    an idle stream's keys expire after this (0: never)
--
-- Reply: {epoch (bulk, decimal text), offset (integer)}; or nil when KEYS[3] is given and
-- that session does not exist (a direct message to an unknown connection: not found; nothing
-- is written).
--
-- Effects: the offset is h + 1 (1, 2, 3, ... under one epoch); the entry "<offset>-0" with
-- fields t = now, d = payload is appended (XADD MAXLEN ~ history_max: whole radix-tree nodes go,
-- so up to ~100 more entries may stay; the read script shows exactly history_max); entries
-- older than history_age_ms go from the front; TTLs are refreshed (_common.lua stream_ttl).
-- Then the message is PUBLISHed:
--   group stream:  to channel P{E(S)}, "<epoch>:<offset>:<time>:<payload>";
--   direct stream: to the holding node's channel P{node:<n>},
--                  "d<len(S)>:<S><epoch>:<offset>:<time>:<payload>", and only while the
--                  session is open (c = 0): a closed session's message waits in the history
--                  for its resume.
--
-- Atomic: a script runs alone in Redis, so the number, the stored entry and the publication
-- happen together: a message a node receives is already stored under its offset, and no two
-- publishers get one offset. Offsets stay below 2^53 (a head that reaches 2^53 - 1 gets a new
-- epoch: _common.lua stream_meta); the epoch is only copied as text.
--
-- Redis Cluster: KEYS[3] is in the session's slot, not the stream's; a cluster needs the
-- session and its direct stream under one hash tag.

local P, S, payload = ARGV[1], nonempty(ARGV[2], 'the stream'), ARGV[3]
local now = uint(ARGV[4], 'now')
local cand = epoch_arg(ARGV[5], 'the epoch candidate')
local run_id = nonempty(ARGV[6], 'the run_id')
local hmax = uint(ARGV[7], 'history_max')
local age = uint(ARGV[8], 'history_age_ms')
local ttl = uint(ARGV[9], 'stream_ttl_ms')
if hmax == 0 then fail('history_max must be at least 1') end
local m, x = KEYS[1], KEYS[2]

local channel
if KEYS[3] then
  local sess = redis.call('HMGET', KEYS[3], 'n', 'c')
  if not sess[1] then return false end
  if sess[2] == '0' then channel = node_channel(P, sess[1]) end
else
  channel = string.sub(m, 1, -3) -- P{E(S)}: the key without ":m"
end

local epoch, head = stream_meta(m, x, cand, run_id)
age_trim(x, now, age)
local offset = fmt(head + 1)
-- The entry first: if XADD fails, the head has not moved.
redis.call('XADD', x, 'MAXLEN', '~', fmt(hmax), offset .. '-0', 't', fmt(now), 'd', payload)
redis.call('HSET', m, 'h', offset)
stream_ttl(P, S, m, x, ttl)

if channel then
  local msg = epoch .. ':' .. offset .. ':' .. fmt(now) .. ':' .. payload
  if KEYS[3] then msg = 'd' .. #S .. ':' .. S .. msg end
  redis.call('PUBLISH', channel, msg)
end
return {epoch, head + 1}
