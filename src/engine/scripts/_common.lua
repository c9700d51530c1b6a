-- _common.lua — helpers shared by the redis engine's scripts. Not a script itself: the build
-- (src/engine/scripts/embed.cmake) puts this text in front of every scripts/<name>.lua, and
-- the result is what SCRIPT LOAD gets. Only `local` names here: Redis refuses globals.
--
-- Numbers. Lua numbers in Redis are doubles: integers are exact below 2^53 only. Offsets,
-- generations, times (ms since 1970) and counts are kept below 2^53 and checked on the way
-- in (uint below). Epochs are 64-bit random numbers and are never computed with: they travel
-- as decimal text from ARGV into the hash and back out as bulk strings, and they are only
-- compared as text, so every bit survives.
--
-- Failures. A script that fails half-way keeps the writes it already made (Redis has no
-- rollback), so every script checks all of its arguments before its first write.
--
-- Keys built here (Redis Cluster: see each script's note) follow docs/ARCHITECTURE.md: a name
-- that comes from outside (a stream, a node id, a connection id, a token) is escaped by esc()
-- so that its bytes '%', '{', '}' cannot end or move the hash tag.

local MAX_SAFE = 9007199254740991 -- 2^53 - 1

local function fail(msg)
  error({err = 'ERR ' .. msg})
end

-- Decimal text below 2^53 (at most 16 digits, no sign), as a number.
local function uint(s, what)
  if type(s) ~= 'string' or #s == 0 or #s > 16 or not string.match(s, '^%d+$') then
    fail(what .. ' must be a decimal integer below 2^53')
  end
  local n = tonumber(s)
  if n > MAX_SAFE then fail(what .. ' must be below 2^53') end
  return n
end

-- An epoch: decimal text of a u64 other than 0, without leading zeros (so that equal
-- epochs are equal texts).
local function epoch_arg(s, what)
  if type(s) ~= 'string' or #s > 20 or not string.match(s, '^[1-9]%d*$') or
      (#s == 20 and s > '18446744073709551615') then
    fail(what .. ' must be a u64 in decimal, not 0, without leading zeros')
  end
  return s
end

local function nonempty(s, what)
  if type(s) ~= 'string' or #s == 0 then fail(what .. ' must not be empty') end
  return s
end

-- An integer as decimal text (tostring would give 1e+15 for large ones).
local function fmt(n)
  return string.format('%.0f', n)
end

local function esc(s)
  return (string.gsub(s, '[%%{}]', {['%'] = '%25', ['{'] = '%7B', ['}'] = '%7D'}))
end

-- ---- key names ------------------------------------------------------------------------

local function stream_base(P, S) return P .. '{' .. esc(S) .. '}' end
local function session_key(P, id) return P .. '{s:' .. esc(id) .. '}' end
local function token_key(P, tok) return P .. '{t:' .. esc(tok) .. '}' end
local function node_channel(P, n) return P .. '{node:' .. esc(n) .. '}' end
local function node_set(P, n) return node_channel(P, n) .. ':s' end
local function node_info(P, n) return node_channel(P, n) .. ':i' end
-- Presence: the group streams where node n has memberships (SET), a node's memberships of
-- stream S (HASH member → identity), and S's connections per identity over every node.
local function node_presence(P, n) return node_channel(P, n) .. ':p' end
local function presence_mine(P, S, n) return stream_base(P, S) .. ':p:' .. n end
local function presence_counts(P, S) return stream_base(P, S) .. ':pc' end

-- ---- presence -------------------------------------------------------------------------

-- One membership more or less in a group's presence: the node's hash `mine` and the group's
-- `counts`; an identity's first connection anywhere and its last one are published on the
-- group's channel `ch` as "p1<identity>" and "p0<identity>" (every node with members there
-- tells its application). Reports whether anything changed.
local function presence_add(mine, counts, ch, member, identity)
  if redis.call('HSETNX', mine, member, identity) == 0 then return false end
  if redis.call('HINCRBY', counts, identity, 1) == 1 then
    redis.call('PUBLISH', ch, 'p1' .. identity)
  end
  return true
end

local function presence_remove(mine, counts, ch, member)
  local identity = redis.call('HGET', mine, member)
  if not identity then return false end
  redis.call('HDEL', mine, member)
  if redis.call('HINCRBY', counts, identity, -1) <= 0 then
    redis.call('HDEL', counts, identity)
    redis.call('PUBLISH', ch, 'p0' .. identity)
  end
  return true
end

-- ---- streams --------------------------------------------------------------------------

-- The stream's epoch (text) and head (number), made anew from the candidate when history
-- may have been lost: the metadata is missing, it was made under another Redis run_id (a
-- restart without persistence, an older RDB, a failover), or the head has reached 2^53 - 1.
-- A new epoch starts at offset 1 with an empty history: the old entries are deleted, so every
-- entry of x belongs to the epoch in m, and XADD's rule (ids only grow) holds again.
-- Offsets only mean something together with their epoch, so restarting at 1 reuses nothing;
-- the candidate must differ from the epoch it replaces (checked: a node that passed the same
-- candidate twice would otherwise reuse offsets under one epoch).
-- Writes only when it makes a new epoch; the callers call it after checking their arguments.
local function stream_meta(m, x, cand, run_id)
  local cur = redis.call('HMGET', m, 'e', 'h', 'r')
  local e, h, r = cur[1], tonumber(cur[2]), cur[3]
  if e and h and r == run_id and h < MAX_SAFE then return e, h end
  if e == cand then fail('the epoch candidate equals the epoch it would replace') end
  redis.call('DEL', x)
  redis.call('HSET', m, 'e', cand, 'h', '0', 'r', run_id)
  return cand, 0
end

-- Offset of a stream entry id "<offset>-0".
local function id_offset(id)
  return tonumber(string.match(id, '^(%d+)-'))
end

-- Deletes the entries older than age_ms (now - t > age_ms) from the front of x. Entries are
-- in publish order and their times nearly so (each is the publishing node's clock), so the
-- first young entry ends the scan; every entry is looked at once as an old one, then it is
-- gone, so the cost is spread over the publishes. The oldest entry alone is read first: on
-- almost every publish it is young and nothing more is read (a batch of 100 each time cost
-- about 85 us of Redis time per publish with 1,000 entries kept).
local function age_trim(x, now, age_ms)
  if age_ms == 0 then return end
  local limit = now - age_ms
  local head = redis.call('XRANGE', x, '-', '+', 'COUNT', 1)
  if #head == 0 or (tonumber(head[1][2][2]) or 0) >= limit then return end
  local last, start = nil, '-'
  while true do
    local batch = redis.call('XRANGE', x, start, '+', 'COUNT', 100)
    local young = false
    for i = 1, #batch do
      local fields = batch[i][2] -- written as t, <time>, d, <payload>
      if (tonumber(fields[2]) or 0) >= limit then
        young = true
        break
      end
      last = batch[i][1]
    end
    if young or #batch < 100 then break end
    start = '(' .. last
  end
  if last then redis.call('XTRIM', x, 'MINID', fmt(id_offset(last) + 1)) end
end

-- TTLs of a stream's keys (m, x). A connection's direct stream "c:<id>" lives exactly as long
-- as its session: no TTL while the session is open, the session's remaining TTL once it is
-- closed (so that an idle open connection never loses its epoch, and a closed one's stream
-- goes with it). Every other stream (and a direct stream with no session) gets at least ttl
-- ms from now: the expiry is pushed out, never pulled in (session_closed may have pushed it
-- further, for the positions its groups hold). ttl 0: no expiry.
local function stream_ttl(P, S, m, x, ttl)
  if string.sub(S, 1, 2) == 'c:' then
    local left = redis.call('PTTL', session_key(P, string.sub(S, 3)))
    if left == -1 then
      redis.call('PERSIST', m)
      redis.call('PERSIST', x)
      return
    elseif left > 0 then
      redis.call('PEXPIRE', m, left)
      redis.call('PEXPIRE', x, left)
      return
    end
  end
  if ttl == 0 then return end
  for _, k in ipairs({m, x}) do
    local left = redis.call('PTTL', k)
    if left == -1 or (left >= 0 and left < ttl) then redis.call('PEXPIRE', k, ttl) end
  end
end

-- ---- sessions -------------------------------------------------------------------------

-- Every key that lives and dies with session id (its direct stream's too), token included.
local function session_all_keys(P, id, tok)
  local s = session_key(P, id)
  local d = stream_base(P, 'c:' .. id)
  local keys = {s, s .. ':g', d .. ':m', d .. ':x'}
  if tok and tok ~= '' then keys[#keys + 1] = token_key(P, tok) end
  return keys
end

-- Deletes a closed session and everything that lives with it. An open one is left alone
-- (it is not ours to drop: a connection holds it).
local function drop_session(P, id)
  local cur = redis.call('HMGET', session_key(P, id), 'c', 't')
  if cur[1] == '0' then return false end
  redis.call('DEL', unpack(session_all_keys(P, id, cur[2])))
  return true
end

-- The cap and the age limit of closed sessions (the set `closed`: id → closed-at ms). The
-- ages are measured with the callers' clock, which may run ahead of Redis' own expiry; a
-- session past its age is dropped here even if Redis has not expired it yet. At most 100
-- such per call (the rest go on later calls); past the cap, the oldest closed go first.
local function evict(P, closed, now, ttl, max)
  local old = redis.call('ZRANGEBYSCORE', closed, '-inf', '(' .. fmt(now - ttl), 'LIMIT', 0, 100)
  for _, id in ipairs(old) do
    redis.call('ZREM', closed, id)
    drop_session(P, id)
  end
  if max == 0 then return end
  local over = redis.call('ZCARD', closed) - max
  if over <= 0 then return end
  local popped = redis.call('ZPOPMIN', closed, over) -- id, score, id, score, ...
  for i = 1, #popped, 2 do drop_session(P, popped[i]) end
end

-- Marks session id closed at `at` (ms) and starts its expiry clock: the session's keys, its
-- token and its direct stream expire ttl ms after `at`; the streams of its groups are kept at
-- least that long (their epochs must outlive the join positions the session holds; PEXPIRE GT
-- never shortens, and leaves a stream without expiry as it is). A session already past its
-- age (a node found dead long after) is dropped at once.
local function close_session(P, closed, id, at, now, ttl)
  if at == 0 then at = 1 end -- 0 means open
  local s = session_key(P, id)
  redis.call('HSET', s, 'c', fmt(at))
  if now - at > ttl then
    redis.call('ZREM', closed, id)
    drop_session(P, id)
    return
  end
  local left = ttl - (now - at)
  if left < 1 then left = 1 end
  for _, k in ipairs(session_all_keys(P, id, redis.call('HGET', s, 't'))) do
    redis.call('PEXPIRE', k, left)
  end
  for _, g in ipairs(redis.call('HKEYS', s .. ':g')) do
    local b = stream_base(P, 'g:' .. g)
    redis.call('PEXPIRE', b .. ':m', left, 'GT')
    redis.call('PEXPIRE', b .. ':x', left, 'GT')
  end
  redis.call('ZADD', closed, fmt(at), id)
end

-- The session (re)opened by `node`: no expiry while a connection holds it, out of the closed
-- set, in the node's set of open sessions (node_expire closes them if the node dies).
local function hold_session(P, closed, id, old_node, node)
  local cur = redis.call('HGET', session_key(P, id), 't')
  for _, k in ipairs(session_all_keys(P, id, cur)) do redis.call('PERSIST', k) end
  redis.call('ZREM', closed, id)
  if old_node and old_node ~= node then redis.call('SREM', node_set(P, old_node), id) end
  redis.call('SADD', node_set(P, node), id)
end

-- ---- the script ------------------------------------------------------------------------
