-- commit: charge used units and money for a session and free what the reservation held.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {session, charge, units, service?, dest?,
--   counters {key: delta}, release (bool), record?}.
-- Units come from the buckets the session holds first, then other applicable buckets (soonest
-- expiry first); money from valid money buckets (soonest expiry first), then the balance,
-- without a credit check: the usage happened. Works on any status (the grant was given).
-- Returns: answer code "ok" {covered_units, charged, from_buckets, released_money}; error
--   "unknown".
local r = replay()
if r then return r end
local a = load_acct()
if not a then return unknown() end
grant_cycle(a)
local list, by_id = load_buckets()
local d = {session = P.session}
local units, charge = N(P.units), N(P.charge)
local raw = redis.call('HGET', K_RSV, P.session)
local res = raw and cjson.decode(raw) or nil
local need = units
if res then
  local held = {}
  for id, n in pairs(res.units) do
    if by_id[id] and N(n) > 0 then held[#held + 1] = by_id[id] end
  end
  table.sort(held, order)
  for _, b in ipairs(held) do
    local t = math.min(need, N(res.units[b.id]), b.remaining)
    if t > 0 then
      b.remaining = b.remaining - t; b.reserved = b.reserved - t
      res.units[b.id] = N(res.units[b.id]) - t
      bdelta(d, b.id, 'remaining', -t); bdelta(d, b.id, 'reserved', -t)
      save_bucket(b)
      need = need - t
    end
  end
end
if need > 0 then need = need - take_free(unit_candidates(list, P.service, P.dest), need, d, 'remaining') end
local from_buckets = take_free(money_candidates(list), charge, d, 'remaining')
local from_balance = charge - from_buckets
if from_balance ~= 0 then
  set_balance(a, N(a.bal) - from_balance)
  d.balance = -from_balance
end
local held_money = res and N(res.money) or 0
local free = math.min(charge, held_money)
if P.release then free = held_money end
if res then
  if P.release then
    for id, n in pairs(res.units) do
      local b = by_id[id]
      if b and N(n) > 0 then
        b.reserved = b.reserved - N(n)
        bdelta(d, id, 'reserved', -N(n))
        save_bucket(b)
      end
    end
    redis.call('HDEL', K_RSV, P.session)
  else
    res.money = held_money - free
    redis.call('HSET', K_RSV, P.session, enc(res))
  end
end
if free ~= 0 then
  set_reserved(a, N(a.rsv) - free)
  d.reserved = -free
end
add_counters(P.counters, d)
d.record = P.record
ledger('commit', d)
return finish('ok', {covered_units = units - need, charged = charge, from_buckets = from_buckets,
  released_money = free})
