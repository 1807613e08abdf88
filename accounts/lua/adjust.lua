-- adjust: an operator correction of the balance, either sign, without a credit check.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {amount (signed), reason}.
-- Returns: answer code "ok" {balance}; errors "unknown", "invalid_state" (terminated),
--   "amount" (balance would leave -(2^53 - 1) .. 2^53 - 1).
local r = replay()
if r then return r end
local a = load_acct()
if not a then return unknown() end
if a.status == 'terminated' then return err('invalid_state', 'account_id', 'account is terminated') end
local bal = N(a.bal) + N(P.amount)
if bal > MAXI or bal < -MAXI then
  return err('amount', 'amount', 'the balance would leave the exact range of 2^53 - 1 micro-units')
end
set_balance(a, bal)
ledger('adjust', {balance = N(P.amount), reason = P.reason})
return finish('ok', {balance = bal})
