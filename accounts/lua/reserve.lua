-- reserve: hold units on applicable unit buckets (soonest expiry first) and money for the rest.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {session, money, units, service?, dest?,
--   expected? (covered units the caller priced with), expires_at}.
-- Returns: answer code "ok" {covered, granted_money, available?}; "stale" {covered} when the
--   buckets cover another amount than expected; "no_credit" {available, covered};
--   "suspended" for a non-active account; error "unknown".
local r = replay()
if r then return r end
local a = load_acct()
if not a then return unknown() end
if a.status ~= 'active' then return finish('suspended', {status = a.status}) end
grant_cycle(a)
local list = load_buckets()
local units, money = N(P.units), N(P.money)
-- count coverage first, write nothing until every check has passed
local covered = 0
local cands = unit_candidates(list, P.service, P.dest)
for _, b in ipairs(cands) do covered = covered + math.min(units - covered, b.remaining - b.reserved) end
if P.expected ~= nil and N(P.expected) ~= covered then
  return finish('stale', {covered = covered})
end
local avail = available(a, list)
if avail ~= nil and money > avail then
  return finish('no_credit', {available = avail, covered = covered})
end
local d = {session = P.session}
take_free(cands, units, d, 'reserved')
local res = redis.call('HGET', K_RSV, P.session)
res = res and cjson.decode(res) or {money = '0', units = {}}
res.money = N(res.money) + money
for id, t in pairs(d.buckets or {}) do res.units[id] = N(res.units[id]) + t.reserved end
res.expires_at = N(P.expires_at)
res.service = P.service
res.dest = P.dest
redis.call('HSET', K_RSV, P.session, enc(res))
if money ~= 0 then
  set_reserved(a, N(a.rsv) + money)
  d.reserved = money
end
ledger('reserve', d)
local detail = {covered = covered, granted_money = money}
if avail ~= nil then detail.available = avail - money end
return finish('ok', detail)
