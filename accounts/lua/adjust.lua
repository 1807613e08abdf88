-- adjust: an operator correction of the balance, either sign, without a credit check.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {amount (signed), reason}.
-- Returns: answer code "ok" {balance}; errors "unknown", "invalid_state" (terminated),
--   "amount" (balance would leave -(2^53 - 1) .. 2^53 - 1).
local r = replay()
if r then return r end
return move_balance('adjust', N(P.amount), P.reason)
