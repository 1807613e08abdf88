"""The node's credit-control engine: one request in, one answer out (online.md), no protobuf.

Prices with `charging.session` (pure), settles with one `online.lua` call per request. The
script decides bucket coverage and credit; when the node priced with facts that are no
longer true (an older session state, other accumulators, a bucket partly used) it answers
"stale" or "short" with the facts, writes nothing, and the node prices again. Per-process
caches (an account's subscriptions and counters, a session's state) make the usual request
one Redis round trip; the script checks every cached fact, so a stale cache costs a retry,
never a wrong charge.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from accounts.errors import UnknownAccount
from accounts.keys import msisdn_digits
from accounts.online import OnlineStore, reservation_field
from accounts.plans import plan_at
from charging import session as S
from rating.cycles import cycle_of

SUCCESS, DENIED, CREDIT_LIMIT, UNKNOWN_SESSION = 2001, 4010, 4012, 5002
OUT_OF_ORDER, USER_UNKNOWN, RATING_FAILED = 5012, 5030, 5031
KINDS = ("INITIAL", "UPDATE", "TERMINATE", "EVENT")
ACTIONS = ("DIRECT_DEBIT", "REFUND", "CHECK_BALANCE", "PRICE_ENQUIRY")
# the most one grant gives (an operator's limit): a request for 2^63 units must not hold all
# the money an account can ever have and block its other sessions
MAX_GRANT = {"seconds": 86_400, "bytes": 1 << 40, "events": 1_000_000}
MAX_ATTEMPTS = 16  # stale/short answers before a request gives up (contention)


class Contention(Exception):
    """The facts kept changing under the request (UNAVAILABLE: the client retries)."""


@dataclass(frozen=True)
class UnitRequest:
    rating_group: int
    service: str
    destination: str = ""
    requested: int | None = None  # None: the service's default quota
    used: int = 0
    money: int | None = None  # a REFUND's amount


@dataclass(frozen=True)
class Request:
    session_id: str
    kind: str  # one of KINDS
    request_number: int
    subscriber: str
    event_time: int | None = None  # UTC s from the network element; None: the node's clock
    action: str | None = None  # one of ACTIONS for an EVENT
    units: tuple[UnitRequest, ...] = ()


@dataclass
class Grant:
    rating_group: int
    result_code: int
    units: int = 0
    unit: str = "events"  # which Units field carries them: seconds, bytes or events
    validity_s: int = 0
    final: bool = False
    money: int | None = None  # a price enquiry's price


@dataclass
class Answer:
    result_code: int
    grants: list[Grant] = field(default_factory=list)
    charged: int = 0
    available: int | None = None
    error_message: str = ""
    account: str | None = None
    final_sessions: bool = False  # some rating group got a final grant
    applied: bool = True  # False: a retransmission answered from the first answer
    buckets: dict | None = None  # unit buckets this request used: {id: {rem, init, used}}


class _Lru:
    """A bounded cache shared by the server's threads."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, default=None):
        return self._d.get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._d

    def pop(self, key, default=None):
        with self._lock:
            return self._d.pop(key, default)

    def put(self, key, value):
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            if len(self._d) > self.size:
                self._d.popitem(last=False)


def unit_of(catalog, service: str) -> str:
    svc = catalog.services.get(service)
    unit = svc.unit if svc is not None else "events"
    return unit if unit in ("seconds", "bytes") else "events"


class Charger:
    def __init__(self, store, catalog, compiled, *, validity_s: int = 300, clock=time.time,
                 cache_size: int = 100_000):
        self.store = store
        self.online = OnlineStore(store)
        self.catalog = catalog
        self.compiled = compiled
        self.validity_s = validity_s
        self.clock = clock
        self._subs: _Lru = _Lru(cache_size)  # account -> (subs list, sha1)
        self._counters: _Lru = _Lru(cache_size)  # account -> {counter key: value}
        self._sessions: _Lru = _Lru(cache_size)  # (account, session) -> {"rgl", "states"}
        self._subscribers: _Lru = _Lru(cache_size)  # subscriber -> account id
        self._trips = 0  # Redis round trips; the server's threads share it (_trip_lock)
        self._trip_lock = threading.Lock()

    @property
    def round_trips(self) -> int:
        """Redis round trips of the requests so far (for /metrics and the benchmark)."""
        return self._trips

    def _trip(self) -> None:
        with self._trip_lock:
            self._trips += 1

    # --- entry point ---------------------------------------------------------------------

    def charge(self, req: Request) -> Answer:
        for retry in (False, True):
            cached = req.subscriber in self._subscribers
            try:
                account = self._resolve(req.subscriber)
                return self._dispatch(req, account)
            except UnknownAccount:
                # a cached subscriber whose account was re-created or lost the MSISDN: the
                # script refused it, nothing was written; resolve again once
                self._subscribers.pop(req.subscriber, None)
                if retry or not cached:
                    return Answer(USER_UNKNOWN,
                                  error_message=f"unknown subscriber {req.subscriber!r}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve(self, subscriber: str) -> str:
        """Subscriber -> account id, cached per process (positive answers only); the script
        checks a cached MSISDN against the account's own."""
        account = self._subscribers.get(subscriber)
        if account is None:
            account = self.store.resolve(subscriber)
            self._trip()
            self._subscribers.put(subscriber, account)
        return account

    def _dispatch(self, req: Request, account: str) -> Answer:
        if req.kind == "EVENT" and req.action == "CHECK_BALANCE":
            avail = self.store.family_available(account, self._now())
            return Answer(SUCCESS, available=avail, account=account)
        if req.kind == "EVENT" and req.action == "PRICE_ENQUIRY":
            return self._price_enquiry(req, account)
        if req.kind == "EVENT" and req.action == "REFUND":
            return self._refund(req, account)
        return self._settle(req, account)

    def _now(self) -> int:
        return int(self.clock())

    # --- facts cached per process, checked by the script ----------------------------------

    def _account_subs(self, account: str) -> tuple[list, str]:
        got = self._subs.get(account)
        if got is None:
            facts = self.online.account_facts(account)
            self._trip()
            got = self._set_subs(account, facts["subs"])
        return got

    def _set_subs(self, account: str, raw: str) -> tuple[list, str]:
        got = (json.loads(raw) or [], hashlib.sha1(raw.encode()).hexdigest())
        if not isinstance(got[0], list):  # cjson writes an empty list as {}
            got = ([], got[1])
        self._subs.put(account, got)
        return got

    def _counter_values(self, account: str, keys: list[str]) -> list[int]:
        known = self._counters.get(account) or {}
        return [int(known.get(k, 0)) for k in keys]

    def _learn_counters(self, account: str, keys: list[str], values: list) -> None:
        known = dict(self._counters.get(account) or {})
        known.update({k: int(v) for k, v in zip(keys, values, strict=True)})
        self._counters.put(account, known)

    # --- sessions: INITIAL, UPDATE, TERMINATE and DIRECT_DEBIT ---------------------------

    def _settle(self, req: Request, account: str) -> Answer:
        """Run `settle_steps` with this process's Redis client."""
        steps = self.settle_steps(req, account)
        try:
            call = next(steps)
            while True:
                account_id, sid, number, params, now, index = call
                call = steps.send(self.online.call(account_id, sid, number, params, now=now,
                                                   index=index))
        except StopIteration as done:
            return done.value

    def settle_steps(self, req: Request, account: str):
        """INITIAL, UPDATE, TERMINATE or DIRECT_DEBIT as a generator, free of I/O on warm
        caches: it yields each `online.lua` call it needs, as (account, session id, request
        number, params, now, index), is sent the script's answer, and returns the Answer.
        `_settle` drives it synchronously; an asyncio server can drive it with an
        asynchronous Redis client (benchmarks/charging_aio.py)."""
        kind = {"INITIAL": "I", "UPDATE": "U", "TERMINATE": "T", "EVENT": "D"}[req.kind]
        now = self._now()
        start = req.event_time if req.event_time is not None else now
        skey = (account, req.session_id)
        sess = self._sessions.get(skey)
        if sess is None:
            sess = {"rgl": "", "states": {}}
        exact: dict[str, int] = {}  # rg -> free bucket units the script reported
        short: dict[str, tuple[int, int]] = {}  # rg -> (available, free)
        static: dict[str, dict] = {}  # rg -> answer decided here (5031, 4012 of an event)
        probe = kind in "UT" and skey not in self._sessions
        for _attempt in range(MAX_ATTEMPTS):
            subs, sha = self._account_subs(account) if kind in "ID" else (None, None)
            if probe:  # no cached state: the script answers "stale" with the session's own
                ops, index, after = [{"rg": str(u.rating_group), "new": False, "seq": "-1"}
                                     for u in req.units[:1]] or [
                    {"rg": "0", "new": False, "seq": "-1"}], [], ""
                probe = False
            else:
                ops, index, after = self._ops(req, kind, account, start, now, sess, subs,
                                              exact, short, static)
            params = {"sid": req.session_id, "req": str(req.request_number), "kind": kind,
                      "rgs": ops, "static": list(static.values()),
                      "rgl_before": sess["rgl"], "rgl_after": after}
            if req.subscriber != account:
                params["msisdn"] = msisdn_digits(req.subscriber) or req.subscriber
            if sha is not None:
                params["subs_sha"] = sha
            if kind == "I" and not ops:
                return self._answer_static(req, account, static)
            self._trip()
            ans = yield account, req.session_id, req.request_number, params, now, index
            code = ans["code"]
            if code == "ok":
                self._remember(account, req, kind, sess, ops, ans, after)
                return self._answer(req, account, ans)
            if code == "replay":
                first = self._answer(req, account, json.loads(ans["answer"]))
                first.applied = False
                return first
            if code == "old":
                return Answer(OUT_OF_ORDER, account=account, error_message=(
                    f"request number {req.request_number} is below {ans['last']}, "
                    "already answered"))
            if code == "no_session":
                self._sessions.pop(skey, None)
                what = "ended" if ans.get("ended") else "unknown"
                return Answer(UNKNOWN_SESSION, account=account,
                              error_message=f"{what} session {req.session_id!r}")
            if code == "suspended":
                return Answer(DENIED, account=account,
                              error_message=f"account {account} is {ans['status']}")
            if code == "stale":
                what = ans["what"]
                if what == "subs":
                    self._set_subs(account, ans["subs"])
                elif what == "state":
                    sess = {"rgl": ans.get("rgl") or "", "states": {
                        rg: (json.loads(raw) if raw else None)
                        for rg, raw in (ans.get("states") or {}).items()}}
                    exact.clear()
                    short.clear()
                elif what == "standing":
                    op = next(o for o in ops if o["rg"] == ans["rg"])
                    self._learn_counters(account, op["skeys"], ans["svals"])
                elif what == "cover":
                    exact[ans["rg"]] = int(ans["free"])
                continue
            if code == "short":
                short[ans["rg"]] = (int(ans["available"]), int(ans["free"]))
                exact[ans["rg"]] = int(ans["free"])
                continue
            raise RuntimeError(f"online.lua answered {code!r}")
        raise Contention(f"session {req.session_id}: the account kept changing; retry")

    def _ops(self, req, kind, account, start, now, sess, subs, exact, short, static):
        """The script's rating groups for this attempt, the expiry-index updates, and the
        session's rating-group list after the request."""
        states = sess["states"]
        listed = {u.rating_group: u for u in req.units}
        rgs = [u.rating_group for u in req.units]
        if kind == "T":  # a TERMINATE ends every rating group of the session
            for rg in sess["rgl"].split(","):
                if rg and int(rg) not in listed:
                    rgs.append(int(rg))
        ops, index = [], []
        known = [x for x in sess["rgl"].split(",") if x]
        for rg in rgs:
            key = str(rg)
            if key in static:
                continue
            unit = listed.get(rg) or UnitRequest(rg, "")
            st = states.get(key)
            try:
                op = self._op(req, kind, account, start, now, unit, st, states, subs,
                              exact.get(key), short.get(key))
            except S.NotRateable as exc:
                static[key] = {"rg": key, "code": str(RATING_FAILED),
                               "msg": f"rating group {rg}: {exc.reason}: {exc}",
                               "unit": unit_of(self.catalog, unit.service)}
                continue
            if op is None:  # an event the credit cannot cover: 4012, nothing charged
                static[key] = {"rg": key, "code": str(CREDIT_LIMIT),
                               "msg": f"rating group {rg}: credit limit reached",
                               "unit": unit_of(self.catalog, unit.service)}
                continue
            ops.append(op)
            if key not in known and kind != "D":
                known.append(key)
            if "rsv" in op:
                index.append((op["rsv"], int(op["expires_at"]) if op.get("hv") else None))
        after = ",".join(sorted(known, key=int)) if kind != "D" else ""
        return ops, index, after

    def _op(self, req, kind, account, start, now, unit, st, states, subs, free, short):
        c = self.compiled
        rg = str(unit.rating_group)
        if st is None:
            if kind in "UT" and not unit.service:
                raise S.NotRateable("unknown_service", "no service for a new rating group")
            first = next((s for s in states.values() if s), None)
            s_start = int(first["rating"]["start"]) if first else start
            if subs is None:
                subs, _ = self._account_subs(account)
            plan = plan_at(self.catalog, subs, s_start)
            bcd = self.store._lookup(account)[1]
            rating = S.open_rating(c, self.catalog, plan.tariff, plan.discounts, unit.service,
                                   unit.destination, s_start,
                                   cycle_of(s_start, bcd, self.catalog.timezone))
            st = {"seq": "0", "rating": rating.to_json(), "standing": None, "tot": None}
            new = True
        else:
            rating = S.Rating.from_json(st["rating"])
            new = False
        tot = S.Totals.from_json(st["tot"]) if st.get("tot") else S.Totals()
        op = {"rg": rg, "new": new, "seq": st["seq"], "svc": rating.service,
              "dn": rating.dest_name, "unit": unit_of(self.catalog, rating.service),
              "at": str(rating.start)}  # buckets are judged valid at the session's start
        if new:
            op["rating"] = rating.to_json()
        # the commit: usage reported now (an INITIAL reports none; an event is its usage)
        used = unit.used if kind in "UT" else 0
        if kind == "D":
            used = unit.requested if unit.requested is not None else (
                unit.used or self.catalog.services[rating.service].default_quota)
        if st.get("standing"):
            standing = S.Standing.from_json(st["standing"])
        else:
            # not fixed yet: the cached accumulators; the script checks them at the first
            # commit (a hold before it is priced with them unchecked: it only holds)
            skeys = S.standing_keys(c, rating)
            svals = self._counter_values(account, skeys)
            standing = S.standing_of(c, rating, svals)
            if used:
                want = 0 if kind in "TD" else (unit.requested if unit.requested is not None
                                                else self.catalog.services[rating.service]
                                                .default_quota)
                reach = min(tot.used + used + want, S.usage_limit(c, rating))
                ranges = S.standing_ranges(c, rating, standing, S.rated(c, rating, reach))
                op["skeys"] = skeys
                op["snames"] = [n for n, _ in standing.discounts]
                op["srange"] = [["" if lo is None else str(lo), "" if hi is None else str(hi)]
                                for lo, hi in ranges]
        new_used = tot.used + used
        if new_used > S.usage_limit(c, rating):
            raise S.NotRateable("malformed", f"usage {new_used} is beyond what one CDR can "
                                "be charged")
        rated_now = S.rated(c, rating, new_used)
        dr = rated_now - tot.rated
        # the outcomes priced: the script's `free` when known; else what this session's
        # last request had (no unit covered, or all), else both (a wrong guess is a "stale
        # cover" answer with the true `free`: one more round trip, never another charge)
        hint = st.get("cov") if free is None else None
        variants = {min(free, dr)} if free is not None else {0} if hint == "none" else \
            {dr} if hint == "all" else {0, dr}
        cv = {}
        # the session's totals after this commit, per coverage variant (the hold prices on)
        base = {cov: tot for cov in variants}
        if used:
            for cov in variants:
                t = base[cov] = S.totals(c, rating, standing, new_used, tot.covered + cov)
                cv[str(cov)] = {"tot": t.to_json(), "charge": str(t.charge - tot.charge),
                                "discount": str(t.discount - tot.discount),
                                "net": str(t.net - tot.net),
                                "ctr": {k: str(v) for k, v in
                                        S.counter_deltas(c, rating, tot, t).items()}}
            op["cv"] = cv
            op["used"], op["drated"] = str(used), str(dr)
            cdr_id = f"{req.session_id}/{rg}" if kind == "D" else \
                f"{req.session_id}/{rg}/{req.request_number}"
            op["record"] = {"cdr_id": cdr_id, "account": account, "session_id": req.session_id,
                            "rating_group": rg, "service": rating.service,
                            "destination": rating.destination,
                            "destination_name": rating.dest_name, "start": str(rating.start)}
        else:
            op["used"], op["drated"] = "0", "0"
        if kind == "D":
            if short is not None:
                return None
            return op
        op["rsv"] = reservation_field(req.session_id, unit.rating_group)
        if kind == "T":
            return op
        # the hold: the requested units, or the service's default quota
        want = unit.requested
        if want is None:
            want = self.catalog.services[rating.service].default_quota
        want = max(0, min(want, MAX_GRANT.get(op["unit"], MAX_GRANT["events"]),
                          S.usage_limit(c, rating) - new_used))
        op["expires_at"] = str(now + self.validity_s)
        if short is not None:
            avail, fr = short
            cov = min(fr, dr)
            units, held, money = S.largest_grant(c, rating, standing, base[cov], want,
                                                 fr - cov, avail)
            op["final"] = True
            if units == 0:
                op["code"] = str(CREDIT_LIMIT)
                op["hunits"], op["hdr"] = "0", "0"
                return op
            op["hunits"] = str(units)
            op["hdr"] = str(S.rated(c, rating, new_used + units) - rated_now)
            op["hv"] = {f"{cov}:{held}": str(money)}
            return op
        if want == 0:
            op["hunits"], op["hdr"] = "0", "0"
            return op
        hdr = S.rated(c, rating, new_used + want) - rated_now
        op["hunits"], op["hdr"] = str(want), str(hdr)
        hv = {}
        pairs = ((0, 0),) if hint == "none" else ((dr, hdr),) if hint == "all" else \
            ((0, 0), (dr, hdr))
        for cov in variants:
            holds = {0, hdr} if free is None else {min(free - cov, hdr)}
            for ch in holds:
                if free is None and (cov, ch) not in pairs:
                    continue
                hv[f"{cov}:{ch}"] = str(S.hold_money(c, rating, standing, base[cov], want, ch))
        op["hv"] = hv
        return op

    def _remember(self, account, req, kind, sess, ops, ans, rgl):
        skey = (account, req.session_id)
        if kind in "TD":
            self._sessions.pop(skey, None)
        else:
            states = dict(sess["states"])
            for op, out in zip(ops, ans.get("rgs") or [], strict=False):
                old = states.get(op["rg"]) or {"rating": op.get("rating"), "standing": None,
                                               "tot": None}
                v = (op.get("cv") or {}).get(out["covered"])
                states[op["rg"]] = {
                    "seq": str(int(op["seq"]) + 1), "rating": old.get("rating") or op["rating"],
                    "standing": old.get("standing") or out.get("standing"),
                    "tot": v["tot"] if v else old.get("tot"),
                    "cov": _coverage(op, out, old.get("cov"))}
            self._sessions.put(skey, {"rgl": rgl, "states": states})
        learned = dict(self._counters.get(account) or {})
        for op, out in zip(ops, ans.get("rgs") or [], strict=False):
            if out.get("svals"):  # the accumulators as the script read them
                learned.update({k: int(x) for k, x in zip(op["skeys"], out["svals"],
                                                           strict=True)})
            v = (op.get("cv") or {}).get(out["covered"])
            for k, d in (v or {}).get("ctr", {}).items():
                learned[k] = learned.get(k, 0) + int(d)
        self._counters.put(account, learned)

    # --- answers -----------------------------------------------------------------------------

    def _answer(self, req, account, ans) -> Answer:
        grants, charged = [], 0
        rgs = ans.get("rgs") or []
        if isinstance(rgs, dict):
            rgs = []
        for out in rgs:
            code = int(out["code"])
            units = int(out["granted"])
            charged += int(out["charged"])
            grants.append(Grant(int(out["rg"]), code, units, out.get("unit", "events"),
                                self.validity_s if req.kind in ("INITIAL", "UPDATE") else 0,
                                bool(out.get("final"))))
        msgs = []
        static = ans.get("static") or []
        for s in static if isinstance(static, list) else []:
            grants.append(Grant(int(s["rg"]), int(s["code"]), 0, s.get("unit", "events")))
            msgs.append(s.get("msg", ""))
        avail = ans.get("available")
        result = _request_code(grants)
        return Answer(result, grants, charged, int(avail) if avail is not None else None,
                      "; ".join(m for m in msgs if m), account,
                      any(g.final for g in grants), buckets=ans.get("bk"))

    def _answer_static(self, req, account, static) -> Answer:
        grants = [Grant(int(s["rg"]), int(s["code"]), 0, s.get("unit", "events"))
                  for s in static.values()]
        return Answer(_request_code(grants), grants, 0, None,
                      "; ".join(s["msg"] for s in static.values()), account)

    # --- events that hold nothing -------------------------------------------------------

    def _price_enquiry(self, req: Request, account: str) -> Answer:
        now = self._now()
        start = req.event_time if req.event_time is not None else now
        subs, _ = self._account_subs(account)
        plan = plan_at(self.catalog, subs, start)
        bcd = self.store._lookup(account)[1]
        cycle = cycle_of(start, bcd, self.catalog.timezone)
        grants, msgs = [], []
        for u in req.units:
            unit = unit_of(self.catalog, u.service)
            try:
                rating = S.open_rating(self.compiled, self.catalog, plan.tariff, plan.discounts,
                                       u.service, u.destination, start, cycle)
                want = u.requested if u.requested is not None else \
                    self.catalog.services[u.service].default_quota
                if want > S.usage_limit(self.compiled, rating):
                    raise S.NotRateable("malformed", f"usage {want} is beyond one CDR")
                keys = S.standing_keys(self.compiled, rating)
                vals = self.store.r.hmget(self.store.account_keys(account).counters, keys)
                standing = S.standing_of(self.compiled, rating, [int(v or 0) for v in vals])
                t = S.totals(self.compiled, rating, standing, want, 0)
                grants.append(Grant(u.rating_group, SUCCESS, want, unit, money=t.net))
            except S.NotRateable as exc:
                grants.append(Grant(u.rating_group, RATING_FAILED, 0, unit))
                msgs.append(f"rating group {u.rating_group}: {exc.reason}: {exc}")
        return Answer(_request_code(grants), grants, 0, None, "; ".join(msgs), account)

    def _refund(self, req: Request, account: str) -> Answer:
        """The session's direct debit of each rating group undone. Money refunds without a
        debit to undo are an administration act (Accounts.Refund on the admin listener),
        never a network element's: the servicer refuses them."""
        total, grants, msgs = 0, [], []
        for u in req.units:
            unit = unit_of(self.catalog, u.service) if u.service else "events"
            self._trip()
            ans = self.online.undo_event(account, req.session_id, req.request_number,
                                         u.rating_group, now=self._now())
            if ans["code"] == "replay":
                ans = json.loads(ans["answer"])
                if "refunded" not in ans:  # the number answered another request: that answer
                    first = self._answer(req, account, ans)
                    first.applied = False
                    return first
            if ans["code"] == "ok":
                total -= int(ans["refunded"])
                grants.append(Grant(u.rating_group, SUCCESS, 0, unit, money=int(ans["refunded"])))
            elif ans["code"] == "already":
                grants.append(Grant(u.rating_group, SUCCESS, 0, unit, money=0))
                msgs.append(f"rating group {u.rating_group}: already refunded")
            else:
                grants.append(Grant(u.rating_group, UNKNOWN_SESSION, 0, unit))
                msgs.append(f"rating group {u.rating_group}: session {req.session_id!r} has "
                            "no direct debit to undo")
        avail = self.store.family_available(account, self._now())
        return Answer(_request_code(grants), grants, total, avail, "; ".join(msgs), account)


def _coverage(op: dict, out: dict, before: str | None) -> str | None:
    """What buckets covered of a request's rated units, as a hint for the session's next:
    "none", "all", None (part of them); `before` when it rated none."""
    want = int(op.get("drated") or 0) + int(op.get("hdr") or 0)
    if want == 0:
        return before
    got = int(out.get("covered") or 0) + int(out.get("held") or 0)
    return "none" if got == 0 else "all" if got == want else None


def _request_code(grants: list[Grant]) -> int:
    if not grants or any(g.result_code == SUCCESS for g in grants):
        return SUCCESS
    return grants[0].result_code
