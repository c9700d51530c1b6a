-- position: a stream's epoch and last offset.
--
-- KEYS[1]  P{E(S)}:m        the stream's metadata
-- KEYS[2]  P{E(S)}:x        its history (deleted with an old epoch; TTL)
-- ARGV[1]  P                the key prefix
-- ARGV[2]  S                the stream name
-- ARGV[3]  epoch candidate  used only if the stream needs a new epoch
-- ARGV[4]  run_id           Redis' run_id as the node read it at connect
-- ARGV[5]  stream_ttl_ms    an idle stream's keys expire after this (0: never)
--
-- Reply: {epoch (bulk), head (integer)}; head 0 before the first message.
--
-- Effects: a stream with missing metadata, or metadata made under another run_id, gets a new
-- epoch (so the position answered is one that later publishes continue); the TTLs are
-- refreshed. A node calls it for every stream it subscribes to, and again at least every
-- stream_ttl_ms / 2 while subscribed: that keeps a quiet stream's epoch alive while anyone
-- can hold a position in it.
--
-- Atomic: one script, so the epoch and the head belong together. The epoch is only copied
-- as text; the head is below 2^53.

local P, S = ARGV[1], nonempty(ARGV[2], 'the stream')
local cand = epoch_arg(ARGV[3], 'the epoch candidate')
local run_id = nonempty(ARGV[4], 'the run_id')
local ttl = uint(ARGV[5], 'stream_ttl_ms')
local m, x = KEYS[1], KEYS[2]

local epoch, head = stream_meta(m, x, cand, run_id)
stream_ttl(P, S, m, x, ttl)
return {epoch, head}
