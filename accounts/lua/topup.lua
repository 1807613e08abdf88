-- topup: add money to the balance and give the gifts of topup promotions it qualifies for.
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {amount}.
-- Promotions come from subscriptions active today (local date) whose topup promotion's
-- min amount <= amount. Works on suspended accounts (paying is how they come back).
-- Returns: answer code "ok" {balance, gifts [bucket id..]}; errors "unknown",
--   "invalid_state" (terminated), "amount" (balance would pass 2^53 - 1).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status == 'terminated' then return err('invalid_state', 'account_id', 'account is terminated') end
local amount = N(P.amount)
local bal = N(a.bal) + amount
if bal > MAXI then return err('amount', 'amount', 'the balance would pass 2^53 - 1 micro-units') end
grant_cycle(a)
set_balance(a, bal)
local d = {balance = amount}
local ids, n = {}, 0
for si, s in ipairs(cjson.decode(a.subs or '[]')) do
  if sub_today(s) then
    for pi, p in ipairs(s.topup or {}) do
      if amount >= N(p.min) then
        n = n + 1
        local id, b = gift(p.gift, 'gift:topup:' .. s.offer, 200000 + si * 1000 + pi, n)
        d.new_buckets = d.new_buckets or {}
        d.new_buckets[id] = b
        ids[#ids + 1] = id
      end
    end
  end
end
ledger('topup', d)
return finish('ok', {balance = bal, gifts = ids})
