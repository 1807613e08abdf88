-- debit: an event charge with a credit check: units from applicable buckets, then money.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {charge, units, service?, dest?, counters,
--   expected?, record?}.
-- Returns: answer code "ok" {covered_units, charged, from_buckets, available?}; "stale"
--   {covered}; "no_credit" {available, covered}; "suspended"; error "unknown".
local r = replay()
if r then return r end
local a = load_acct()
if not a then return unknown() end
if a.status ~= 'active' then return finish('suspended', {status = a.status}) end
grant_cycle(a)
local list = load_buckets()
local units, charge = N(P.units), N(P.charge)
local cands = unit_candidates(list, P.service, P.dest)
local covered = 0
for _, b in ipairs(cands) do covered = covered + math.min(units - covered, b.remaining - b.reserved) end
if P.expected ~= nil and N(P.expected) ~= covered then
  return finish('stale', {covered = covered})
end
local avail = available(a, list)
if avail ~= nil and charge > avail then
  return finish('no_credit', {available = avail, covered = covered})
end
local d = {}
take_free(cands, units, d, 'remaining')
local from_buckets = take_free(money_candidates(list), charge, d, 'remaining')
if charge - from_buckets ~= 0 then
  set_balance(a, N(a.bal) - (charge - from_buckets))
  d.balance = -(charge - from_buckets)
end
add_counters(P.counters, d)
d.record = P.record
ledger('debit', d)
local detail = {covered_units = covered, charged = charge, from_buckets = from_buckets}
if avail ~= nil then detail.available = avail - charge end
return finish('ok', detail)
