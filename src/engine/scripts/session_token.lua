-- session_token: binds a new single-use resume token to a session.
--
-- KEYS[1]  P{s:<connid>}    the session
-- KEYS[2]  P{t:<token>}     the new token (STRING → connid)
-- ARGV[1]  P                the key prefix
-- ARGV[2]  connid           the connection id
-- ARGV[3]  token            the new token
-- ARGV[4]  node             the node asking
-- ARGV[5]  generation       the generation its connection holds
--
-- Reply: 1 bound; 0 when another node or generation holds the session (a stale holder must
-- not hand out tokens for it); nil when there is no such session.
--
-- Effects: the session's previous token is deleted (one live token per session); the new
-- token key is set and t = token; the token key has the session's TTL (none while open).
--
-- Atomic: the fence check, the old token's deletion and the new binding are one step, so a
-- take never finds a token that the session no longer names.
--
-- Redis Cluster: the previous token's key is built here (another slot).

local P = ARGV[1]
local id = nonempty(ARGV[2], 'the connection id')
local tok = nonempty(ARGV[3], 'the token')
local node = nonempty(ARGV[4], 'the node id')
local gen = ARGV[5]
uint(gen, 'the generation')
local s, tk = KEYS[1], KEYS[2]

local cur = redis.call('HMGET', s, 'n', 'g', 't')
if not cur[2] then return false end
if cur[1] ~= node or cur[2] ~= gen then return 0 end
if cur[3] and cur[3] ~= '' and cur[3] ~= tok then redis.call('DEL', token_key(P, cur[3])) end
redis.call('SET', tk, id)
redis.call('HSET', s, 't', tok)
local left = redis.call('PTTL', s)
if left > 0 then redis.call('PEXPIRE', tk, left) end
return 1
