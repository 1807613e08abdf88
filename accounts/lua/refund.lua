-- refund: give money back to the balance (a positive amount, checked by the store).
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {amount, reason}.
-- Returns: answer code "ok" {balance}; errors "unknown", "invalid_state" (terminated),
--   "amount" (balance would pass 2^53 - 1).
local r = replay()
if r then return r end
return move_balance('refund', N(P.amount), P.reason)
