-- fence: make sure the create of a claim never writes its account, unless it already has.
-- KEYS: 1 the claimed account's hash, 2 its fence key for the claim (`<base>:fence:<token>`),
--   both in the account's slot. ARGV: 1 the claim's token, 2 TTL of the fence in seconds.
-- Returns 1 when the account was written by this claim (the claim is real: keep it), else 0:
--   the fence is set, and the create script of that claim refuses to write from now on.
local acct = redis.call('HMGET', KEYS[1], 'id', 'claim')
if acct[1] and acct[2] == ARGV[1] then return 1 end
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[2]))
return 0
