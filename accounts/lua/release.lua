-- release: free all money and units a session holds and forget its reservation.
-- KEYS: the six account keys of _lib.lua, then a child's four parent keys (money a child's
--   session held on its parent is freed there, with a ledger entry on the parent).
-- ARGV: op id, fingerprint, context, params {session, reason, expired_only (bool), grace}.
-- With expired_only (the sweeper) the reservation is released only when expires_at + grace
-- <= now, checked here, inside the script, so racing sweepers and renewals are safe.
-- Returns: answer code "ok" {found, released_money, released_units}; "not_expired"
--   {expires_at} (not recorded under the op id); error "unknown".
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
local raw = redis.call('HGET', K_RSV, P.session)
if not raw then return finish('ok', {found = false, released_money = 0, released_units = 0}) end
local res = cjson.decode(raw)
if P.expired_only and NOW < N(res.expires_at) + N(P.grace) then
  return finish('not_expired', {expires_at = N(res.expires_at)}, false)
end
local _, by_id = load_buckets()
local d = {session = P.session, reason = P.reason}
local units = free_held_units(res, by_id, d)
local money = N(res.money)
if money ~= 0 then
  set_reserved(a, N(a.rsv) - money)
  d.reserved = -money
end
local pa = PAR and load_acct(PAR) or nil
local pmoney = pa and N(res.pmoney) or 0
if pmoney ~= 0 then
  set_reserved(pa, N(pa.rsv) - pmoney, PAR)
  d.parent_reserved = -pmoney
  ledger('release', {child = a.id, session = P.session, reason = P.reason, reserved = -pmoney}, PAR)
end
redis.call('HDEL', K_RSV, P.session)
ledger('release', d)
return finish('ok', {found = true, released_money = money + pmoney, released_units = units})
