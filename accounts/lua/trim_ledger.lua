-- trim_ledger: the archive's last step (billing/archive.py), once the account's ledger entries
-- up to ARGV[3] are committed to the SQL archive: delete them from the stream and record the
-- checkpoint (the account's balances at that entry) in one atomic step, so the audit always
-- finds either the old checkpoint and every entry after it, or the new one and every entry
-- after that. No prelude (accounts/scripts.py STANDALONE): no op id, no context.
-- KEYS: 1 account hash, 2 ledger stream, 3 checkpoint hash (one account: one slot).
-- ARGV: 1 the claim token the archiver read (the account must still be that create's),
--   2 the checkpoint id its replay started from ('' = none), 3 the new checkpoint id (the
--   last archived entry), 4 the balances JSON at it (stored as given, never decoded here:
--   cjson would round its integers), 5 the cycle, 6 now (UTC s), 7 compact: rewrite the
--   stream when at most this many entries are left (0: never).
-- Returns {code, entries removed, 1 if compacted}: 'trimmed'; 'done' (this checkpoint is
-- recorded already: a re-run); 'moved' (another archiver recorded another checkpoint since
-- ARGV[2] was read: nothing done, the archive is re-run from the new one); 'unknown' (no
-- account of that claim).
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return {'unknown', 0, 0} end
local current = redis.call('HGET', KEYS[3], 'id') or ''
if current == ARGV[3] then return {'done', 0, 0} end
if current ~= ARGV[2] then return {'moved', 0, 0} end
local ms, seq = string.match(ARGV[3], '^(%d+)-(%d+)$')
if ms == nil then return redis.error_reply('trim_ledger: bad entry id ' .. ARGV[3]) end
-- MINID removes the entries whose id is below it: every entry up to and including ARGV[3]
-- (stream ids only grow, so no entry below it can be added after the archiver read them)
local removed = redis.call('XTRIM', KEYS[2], 'MINID', '=',
  ms .. '-' .. string.format('%d', tonumber(seq) + 1))
redis.call('HSET', KEYS[3], 'id', ARGV[3], 'state', ARGV[4], 'cycle', ARGV[5], 'at', ARGV[6])
-- XTRIM frees only whole listpack nodes (about 4 KB or 100 entries each): the entries left
-- beside removed ones keep the node and its dead bytes. A short rest is written again into
-- a fresh stream with the same ids and the same last id, so the key holds only live bytes.
local left = redis.call('XLEN', KEYS[2])
if removed == 0 or left == 0 or left > tonumber(ARGV[7] or '0') then
  return {'trimmed', removed, 0}
end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
local meta = {}
for i = 1, #info, 2 do meta[info[i]] = info[i + 1] end
local rest = redis.call('XRANGE', KEYS[2], '-', '+')
redis.call('DEL', KEYS[2])
for _, e in ipairs(rest) do redis.call('XADD', KEYS[2], e[1], unpack(e[2])) end
if meta['entries-added'] ~= nil then
  redis.call('XSETID', KEYS[2], meta['last-generated-id'], 'ENTRIESADDED', meta['entries-added'],
    'MAXDELETEDID', meta['max-deleted-entry-id'])
else
  redis.call('XSETID', KEYS[2], meta['last-generated-id'])
end
return {'trimmed', removed, 1}
