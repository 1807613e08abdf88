-- create: write a new account, its subscriptions (with their gifts) and this cycle's allowances.
-- KEYS: the six account keys of _lib.lua, then for a child its parent's four keys (the
--   parent must exist; the child is added to its children set), then the fence key of this
--   create's claim (`<base>:fence:<token>`, set when another create took the claim over).
-- ARGV: op id, fingerprint, context (CTX.claim: this create's claim token, stored as the
--   account's `claim`), params {id, currency, cl ("u" | digits), bcd, parent?, msisdns [..],
--   subs [subscription..]} (subscription: {offer, from, to?, base, from_utc, to_utc?, allow
--   [{name, service, units, dest?}], gifts [gift], topup [{min, gift}]}).
-- Returns: answer {code "ok"}; errors "exists" when the account is there already or the
--   claim was taken over, "unknown" (field parent) when the parent is not.
local r = replay()
if r then return r end
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then
  return err('exists', 'account_id', 'account ' .. P.id .. ' is being created by another request')
end
if redis.call('EXISTS', K_ACCT) == 1 then
  return err('exists', 'account_id', 'account ' .. P.id .. ' already exists')
end
if PAR ~= nil and redis.call('EXISTS', PAR.acct) == 0 then
  return err('unknown', 'parent', 'no parent account ' .. tostring(P.parent))
end
if PAR ~= nil then redis.call('SADD', PAR.kids, P.id) end
local msisdns = table.concat(P.msisdns or {}, ',')
redis.call('HSET', K_ACCT, 'id', P.id, 'currency', P.currency, 'status', 'active', 'cl', P.cl,
  'bal', '0', 'rsv', '0', 'bcd', P.bcd, 'parent', P.parent or '', 'msisdns', msisdns,
  'subs', '[]', 'created', I(NOW), 'claim', CTX.claim)
ledger('create', {create = {currency = P.currency, status = 'active', credit_limit = P.cl,
  balance = 0, reserved = 0, bcd = P.bcd, parent = P.parent or '', msisdns = msisdns}})
local a = load_acct()
local ngifts = 0
for _, s in ipairs(P.subs or {}) do
  local c = sub_conflict(a, s)
  if c then return c end  -- Python checks the same before calling; defensive only
  ngifts = ngifts + add_sub(a, s, ngifts)
end
grant_cycle(a)
return finish('ok', {})
