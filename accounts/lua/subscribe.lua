-- subscribe: add a subscription; grants its subscribe gifts and this cycle's allowances.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {sub: subscription as in create.lua}.
-- Returns: answer {code "ok"}; errors "unknown", "invalid_state" (terminated account, second
--   base offer or the same offer overlapping).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status == 'terminated' then return err('invalid_state', 'account_id', 'account is terminated') end
local c = sub_conflict(a, P.sub)
if c then return c end
grant_cycle(a)
add_sub(a, P.sub, 0)
return finish('ok', {})
