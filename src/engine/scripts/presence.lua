-- presence: one node's memberships of one group stream, and the group's connections per
-- identity across the cluster.
--
-- KEYS[1]  P{E(S)}:p:<node>   this node's memberships of S (HASH member → identity)
-- KEYS[2]  P{E(S)}:pc         S's connections per identity, every node (HASH identity → n)
-- KEYS[3]  P{node:<id>}:p     the group streams where this node has memberships (SET)
-- KEYS[4]  P{E(S)}            S's channel (the presence events go there)
-- ARGV[1]  S                  the group stream ("g:<group>")
-- ARGV[2]  op                 'a' add, 'r' remove, 's' sync
-- ARGV[3..]                   member, identity, member, identity, ... (remove: the members'
--                             identities are ignored; sync: all of the node's memberships of
--                             S, possibly none)
--
-- A member is the node's own name for one membership (unique among its live ones). Add is
-- idempotent (a member already there is left as it is), remove of an unknown member does
-- nothing. Sync makes the node's hash exactly the given set, changing only what differs: the
-- node sends it for every group after it lost Redis (an add or a remove may have failed, or
-- Redis may have restarted without the data), so a reconnect does not make people appear to
-- leave and come back.
--
-- Reply: the number of memberships added or removed (integer).
--
-- Events: an identity's count going from 0 to 1 publishes "p1<identity>" on S's channel, from
-- 1 to 0 "p0<identity>" (presence_add/presence_remove in _common.lua).
--
-- Atomic: the membership, the count and the event change in one step, so every node's view
-- of the counts is the sum of the nodes' hashes. A dead node's memberships are taken out by
-- node_expire (it finds them through KEYS[3]).
--
-- Redis Cluster: KEYS[1], [2] and [4] share S's hash tag; KEYS[3] is the node's.

local S = nonempty(ARGV[1], 'the stream')
local op = ARGV[2]
if op ~= 'a' and op ~= 'r' and op ~= 's' then fail("op must be 'a', 'r' or 's'") end
if #ARGV % 2 ~= 0 then fail('members and identities come in pairs') end
local mine, counts, set, ch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local changed = 0
if op == 'a' then
  for i = 3, #ARGV, 2 do
    if presence_add(mine, counts, ch, ARGV[i], ARGV[i + 1]) then changed = changed + 1 end
  end
elseif op == 'r' then
  for i = 3, #ARGV, 2 do
    if presence_remove(mine, counts, ch, ARGV[i]) then changed = changed + 1 end
  end
else
  local want = {}
  for i = 3, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
  local cur = redis.call('HGETALL', mine)
  for i = 1, #cur, 2 do
    local m, id = cur[i], cur[i + 1]
    if want[m] == id then
      want[m] = nil -- already right
    elseif presence_remove(mine, counts, ch, m) then
      changed = changed + 1
    end
  end
  for m, id in pairs(want) do
    if presence_add(mine, counts, ch, m, id) then changed = changed + 1 end
  end
end
if redis.call('EXISTS', mine) == 1 then
  redis.call('SADD', set, S)
else
  redis.call('SREM', set, S)
end
return changed
