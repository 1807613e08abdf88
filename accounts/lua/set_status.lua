-- set_status: active | suspended | terminated; terminated is final.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {status, reason}.
-- Returns: answer code "ok" {status, previous}; errors "unknown", "invalid_state" (leaving
--   terminated).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status == 'terminated' and P.status ~= 'terminated' then
  return err('invalid_state', 'status', 'a terminated account cannot become ' .. P.status)
end
local previous = a.status
if P.status ~= previous then
  redis.call('HSET', K_ACCT, 'status', P.status)
  ledger('set_status', {status = P.status, reason = P.reason})
end
return finish('ok', {status = P.status, previous = previous})
