-- change_payment_type: set the credit limit ("0" prepaid, digits postpaid, "u" unlimited).
-- Outstanding reservations stay held; they count against the new limit.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {cl}.
-- Returns: answer code "ok" {previous}; errors "unknown", "invalid_state" (terminated).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status == 'terminated' then return err('invalid_state', 'account_id', 'account is terminated') end
local previous = a.cl
if P.cl ~= previous then
  redis.call('HSET', K_ACCT, 'cl', P.cl)
  ledger('change_payment_type', {credit_limit = P.cl})
end
return finish('ok', {previous = previous})
