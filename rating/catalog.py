"""Catalog loading: YAML text to a validated `rating.model.Catalog`, or every error at once.

Walks `yaml.compose` nodes (SafeLoader) so each issue names its path inside the file and its
line; a catalog with any issue is refused whole (`CatalogError`).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from dataclasses import dataclass
from fractions import Fraction

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rating import model
from rating.catalog_offers import OfferSections
from rating.money import ROUNDING_METHODS, MoneyError, format_money, parse_money

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PER = 2**40  # keeps price * per and the rounding products inside int64 (see kernels)
MAX_PRICE_TIMES_PER = 2**60
# Every other count of the catalog (units, quotas, tier edges), and every amount in
# micro-units, is at most this: the largest integer a double (Redis Lua, JSON) holds exactly,
# the bound the accounts layer keeps on balances and the engine on standings.
MAX_COUNT = 2**53 - 1
MAX_DAYS = 36_525  # validity, due and grace days: at most 100 years of date arithmetic
# An integer field takes plain decimal digits only: YAML 1.1 would also read 1:00 (60),
# 0x3c, 0o17 (a string there), 074 (octal 60), 1_000 and +60, which nobody means in a tariff.
_PLAIN_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_TIME = re.compile(r"^(\d\d):(\d\d)$")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class CatalogIssue:
    path: str
    line: int | None
    message: str


class CatalogError(ValueError):
    """A refused catalog; `issues` lists every problem found."""

    def __init__(self, issues: list[CatalogIssue], source: str = "<catalog>"):
        self.issues = list(issues)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.source}:{i.line if i.line is not None else '?'}: "
            f"{i.path + ': ' if i.path else ''}{i.message}"
            for i in self.issues
        )


# libyaml's loader when PyYAML was built with it (about 10x faster on large catalogs); the
# nodes carry the same line marks either way
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_catalog(path) -> model.Catalog:
    """Read and validate the catalog file at `path` (OSError when it cannot be read)."""
    with open(path, "rb") as f:
        return parse_catalog(f.read(), source=str(path))


def _text(data: str | bytes, source: str) -> str:
    """The catalog's text: bytes must be UTF-8 (one issue naming the first bad byte), and
    text must encode as UTF-8 (no lone surrogates)."""
    try:
        if isinstance(data, bytes):
            return data.decode("utf-8")
        data.encode("utf-8")
        return data
    except UnicodeError as e:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        if isinstance(data, str):  # the offset of a character: count the bytes before it
            e.start = len(data[: e.start].encode("utf-8", "surrogatepass"))
        line = raw[: e.start].count(b"\n") + 1
        what = f"byte 0x{raw[e.start]:02x}" if isinstance(data, bytes) else "a lone surrogate"
        message = f"not UTF-8: {what} at offset {e.start} cannot be decoded"
        raise CatalogError([CatalogIssue("", line, message)], source) from None


def parse_catalog(text: str | bytes, source: str = "<catalog>") -> model.Catalog:
    """Validate catalog YAML `text` (str, or UTF-8 bytes); raise `CatalogError` listing every
    issue."""
    text = _text(text, source)
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise CatalogError([CatalogIssue("", line, f"not valid YAML: {e}")], source) from None
    except RecursionError:
        raise CatalogError([CatalogIssue("", None, "not valid YAML: nested too deeply")], source) from None
    p = _Parser()
    cat = p.catalog(root)
    if p.issues:
        p.issues.sort(key=lambda i: (i.line or 0,))
        raise CatalogError(p.issues, source)
    return cat


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Parser(OfferSections):
    """Collects issues while building model objects; returns None for parts in error.

    The offer-side sections (offers, account_discounts, tax, billing) are in
    `rating.catalog_offers`; the pricing sections and the node helpers are here."""

    join = staticmethod(_join)  # for the sections in rating.catalog_offers

    def __init__(self):
        self.issues: list[CatalogIssue] = []
        self._key_of: dict[int, Node] = {}  # id(value node) -> its key node, for key errors

    # -- generic node helpers -------------------------------------------------------------
    def err(self, path: str, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.issues.append(CatalogIssue(path, line, message))

    def mapping(self, node, path, allowed=None, required=()) -> dict[str, Node] | None:
        """Mapping node to {key: value node}, reporting duplicate, unknown, missing keys."""
        if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL):
            node = MappingNode("tag:yaml.org,2002:map", [], node.start_mark if node else None)
        if not isinstance(node, MappingNode):
            self.err(path, node, "expected a mapping")
            return None
        out: dict[str, Node] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode):
                self.err(path, k, "keys must be plain names")
                continue
            key = k.value
            if key in out:
                self.err(_join(path, key), k, "duplicate key")
                continue
            if allowed is not None and key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                self.err(_join(path, key), k, f"unknown key{hint}")
                continue
            out[key] = v
            self._key_of[id(v)] = k
        for key in required:
            if key not in out:
                self.err(_join(path, key), node if node.start_mark else None, "missing")
        return out

    def err_key(self, path: str, value: Node, message: str) -> None:
        """An issue about a mapping key (a name), reported on the key's line."""
        self.err(path, self._key_of.get(id(value), value), message)

    def sequence(self, node, path) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.err(path, node, "expected a list")
            return None
        return list(node.value)

    def string(self, node, path) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            self.err(path, node, "expected a string")
            return None
        return node.value

    def name(self, node, path) -> str | None:
        s = self.string(node, path)
        if s is not None and not _NAME.match(s):
            self.err(path, node, f"invalid name {s!r}")
            return None
        return s

    def integer(self, node, path, lo, hi, what) -> int | None:
        """A YAML integer in plain decimal digits within lo..hi (`what` says so)."""
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.err(path, node, f"expected {what}")
            return None
        if not _PLAIN_INT.match(node.value):
            self.err(path, node, f"expected {what} in plain decimal digits, got {node.value!r}")
            return None
        v = int(node.value)
        if v < lo or v > hi:
            self.err(path, node, f"expected {what}, got {v}")
            return None
        return v

    def count(self, node, path, lo=1) -> int | None:
        """A count of units within lo..MAX_COUNT."""
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        return self.integer(node, path, lo, MAX_COUNT, f"{what} up to {MAX_COUNT}")

    def days(self, node, path, lo=1) -> int | None:
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        return self.integer(node, path, lo, MAX_DAYS, f"{what} up to {MAX_DAYS}")

    def money(self, node, path) -> int | None:
        """A non-negative amount in micro-units, at most MAX_COUNT."""
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            got = "a number" if isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT) else "this"
            self.err(path, node, f"expected a decimal string such as \"0.0900\" (quoted), got {got}")
            return None
        try:
            micro = parse_money(node.value, path, allow_negative=False)
        except MoneyError as e:
            self.err(path, node, e.message)
            return None
        if micro > MAX_COUNT:
            self.err(path, node, f"amount {node.value!r} is beyond {format_money(MAX_COUNT)}")
            return None
        return micro

    def percent(self, node, path) -> Fraction | None:
        if isinstance(node, ScalarNode) and node.tag == _INT and not _PLAIN_INT.match(node.value):
            self.err(path, node, f"expected a percent in plain decimal digits, got {node.value!r}")
            return None
        if isinstance(node, ScalarNode) and node.tag in (_STR, _INT):
            try:
                micro = parse_money(node.value, path, allow_negative=False)
            except MoneyError as e:
                self.err(path, node, e.message)
                return None
            if micro > 100_000_000:
                self.err(path, node, f"percent must be within 0..100, got {node.value}")
                return None
            return Fraction(micro, 1_000_000)
        self.err(path, node, "expected a percent as a decimal string or an integer")
        return None

    def time(self, node, path) -> int | None:
        if isinstance(node, ScalarNode) and node.tag == _INT:
            self.err(path, node, 'expected "HH:MM" in quotes (unquoted, YAML reads it as a number)')
            return None
        s = self.string(node, path)
        m = _TIME.match(s) if s is not None else None
        if s is not None and (not m or int(m[2]) > 59 or int(m[1]) * 60 + int(m[2]) > 1440):
            m = None
            self.err(path, node, f'expected a time "HH:MM" from "00:00" to "24:00", got {s!r}')
        return int(m[1]) * 60 + int(m[2]) if m else None

    def names_list(self, node, path, known, what) -> tuple[str, ...] | None:
        """A list of distinct names, each one of `known`."""
        items = self.sequence(node, path)
        if items is None:
            return None
        out, ok = [], True
        for i, n in enumerate(items):
            s = self.string(n, _join(path, i))
            if s is None:
                ok = False
            elif s not in known:
                self.err(_join(path, i), n, f"unknown {what} {s!r}")
                ok = False
            elif s in out:
                self.err(_join(path, i), n, f"{what} {s!r} listed twice")
                ok = False
            else:
                out.append(s)
        return tuple(out) if ok else None

    # -- sections -------------------------------------------------------------------------
    def catalog(self, root) -> model.Catalog | None:
        top = self.mapping(
            root,
            "",
            ("currency", "timezone", "rounding", "destinations", "time_bands", "tariffs",
             "discounts", "services", "offers", "account_discounts", "tax", "billing"),
            ("currency", "timezone", "tariffs"),
        )
        if top is None:
            return None
        currency = None
        if "currency" in top:
            currency = self.string(top["currency"], "currency")
            if currency is not None and not re.match(r"^[A-Z]{3}$", currency):
                self.err("currency", top["currency"], f"expected 3 capital letters, got {currency!r}")
        tzname = None
        if "timezone" in top:
            tzname = self.string(top["timezone"], "timezone")
            if tzname is not None:
                try:
                    zoneinfo.ZoneInfo(tzname)
                except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                    self.err("timezone", top["timezone"], f"unknown IANA timezone {tzname!r}")
        rounding = self.rounding(top.get("rounding"))
        services = self.services(top.get("services"))
        dests = self.destinations(top.get("destinations"))
        bands = self.bands(top.get("time_bands"))
        tariffs = self.tariffs(top.get("tariffs"), dests, {b.name for b in bands}, services)
        discounts = self.discounts(top.get("discounts"), services)
        acc_discounts = self.account_discounts(top.get("account_discounts"))
        offers = self.offers(top.get("offers"), tariffs, discounts, acc_discounts, dests, services)
        tax = self.tax(top["tax"]) if "tax" in top else None
        billing = self.billing(top.get("billing"))
        if self.issues:
            return None
        return model.Catalog(
            currency=currency, timezone=tzname, rounding=rounding, destinations=dests,
            time_bands=bands, tariffs=tariffs, discounts=discounts, services=services,
            offers=offers, account_discounts=acc_discounts, tax=tax, billing=billing,
        )

    def rounding(self, node) -> model.Rounding:
        m = self.mapping(node, "rounding", ("decimals", "method")) or {}
        dec = self.integer(m["decimals"], "rounding.decimals", 0, 6, "an integer 0..6") if "decimals" in m else 4
        method = "half_up"
        if "method" in m:
            method = self.string(m["method"], "rounding.method")
            if method is not None and method not in ROUNDING_METHODS:
                self.err("rounding.method", m["method"], f"expected one of {', '.join(ROUNDING_METHODS)}, got {method!r}")
        return model.Rounding(dec if dec is not None else 4, method or "half_up")

    def services(self, node) -> dict[str, model.Service]:
        out = {n: model.Service(n, u, q) for n, (u, q) in model.BUILTIN_SERVICES.items()}
        if node is None:
            return out
        m = self.mapping(node, "services") or {}
        for name, sn in m.items():
            path = _join("services", name)
            if not _NAME.match(name):
                self.err_key(path, sn, f"invalid service name {name!r}")
                continue
            sm = self.mapping(sn, path, ("unit", "default_quota"))
            if sm is None:
                continue
            base = out.get(name)
            if base is None and "unit" not in sm:
                self.err(_join(path, "unit"), sn, "missing (a new service needs its unit)")
                continue
            unit = base.unit if base else None
            if "unit" in sm:
                unit = self.name(sm["unit"], _join(path, "unit"))
            quota = base.default_quota if base else 1
            if "default_quota" in sm:
                quota = self.count(sm["default_quota"], _join(path, "default_quota"))
            if unit is not None and quota is not None:
                out[name] = model.Service(name, unit, quota)
        return out

    def destinations(self, node) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        if node is None:
            return out
        seen: dict[str, str] = {}
        for name, dn in (self.mapping(node, "destinations") or {}).items():
            path = _join("destinations", name)
            if not _NAME.match(name):
                self.err_key(path, dn, f"invalid destination name {name!r}")
            items = self.sequence(dn, path)
            if items is None:
                continue
            prefixes = []
            for i, pn in enumerate(items):
                ppath = _join(path, i)
                if isinstance(pn, ScalarNode) and pn.tag == _INT:
                    self.err(ppath, pn, "expected a quoted string of digits (a number loses leading zeros)")
                    continue
                s = self.string(pn, ppath)
                if s is None:
                    continue
                if s and not (s.isascii() and s.isdigit()):
                    self.err(ppath, pn, f"a prefix is digits only, got {s!r}")
                elif len(s) > 18:
                    self.err(ppath, pn, "a prefix has at most 18 digits")
                elif s in seen:
                    self.err(ppath, pn, f"prefix {s!r} is listed twice (also in {seen[s]})")
                else:
                    seen[s] = name
                    prefixes.append(s)
            out[name] = tuple(prefixes)
        return out

    def bands(self, node) -> tuple[model.TimeBand, ...]:
        out = []
        if node is None:
            return ()
        for name, bn in (self.mapping(node, "time_bands") or {}).items():
            path = _join("time_bands", name)
            bm = self.mapping(bn, path, ("days", "from", "to"))
            if bm is None:
                continue
            days = tuple(range(7))
            if "days" in bm:
                items = self.sequence(bm["days"], _join(path, "days")) or []
                ds = []
                for i, n in enumerate(items):
                    s = self.string(n, _join(_join(path, "days"), i))
                    if s is not None and s not in DAYS:
                        self.err(_join(_join(path, "days"), i), n, f"expected a day name among {', '.join(DAYS)}, got {s!r}")
                    elif s is not None:
                        ds.append(DAYS.index(s))
                days = tuple(sorted(set(ds)))
            start = self.time(bm["from"], _join(path, "from")) if "from" in bm else 0
            end = self.time(bm["to"], _join(path, "to")) if "to" in bm else 1440
            if start == 1440:
                self.err(_join(path, "from"), bm["from"], '"24:00" is only allowed for to')
            elif start is not None and end is not None and start >= end:
                self.err(_join(path, "from"), bm.get("from", bn), "from must be before to (split a band that crosses midnight in two)")
            out.append(model.TimeBand(name, days, start or 0, end or 1440))
        return tuple(out)

    def tariffs(self, node, dests, bands, services) -> dict[str, dict[str, tuple]]:
        """Tariffs; a service a tariff names that `services` lacks is added to it, counted in
        whole units with default quota 1 (rating.md: a CDR's service is voice, sms, data or
        a catalog service)."""
        out: dict[str, dict[str, tuple]] = {}
        for tname, tn in (self.mapping(node, "tariffs") or {}).items():
            tpath = _join("tariffs", tname)
            out[tname] = {}
            for sname, sn in (self.mapping(tn, tpath) or {}).items():
                spath = _join(tpath, sname)
                if not _NAME.match(sname):
                    self.err_key(spath, sn, f"invalid service name {sname!r}")
                elif sname not in services:
                    services[sname] = model.Service(sname, *model.IMPLICIT_SERVICE)
                items = self.sequence(sn, spath)
                if items is None:
                    continue
                if not items:
                    self.err(spath, sn, "a service needs at least one entry")
                entries = [self.entry(en, _join(spath, i), dests, bands) for i, en in enumerate(items)]
                out[tname][sname] = tuple(entries)
        return out

    def entry(self, node, path, dests, bands) -> model.RateEntry | None:
        m = self.mapping(node, path, ("destination", "band", "price", "per", "increments", "connect_fee", "tiers"))
        if m is None:
            return None
        dest = band = None
        if "destination" in m:
            dest = self.string(m["destination"], _join(path, "destination"))
            if dest is not None and dest not in dests:
                self.err(_join(path, "destination"), m["destination"], f"unknown destination {dest!r}")
        if "band" in m:
            band = self.string(m["band"], _join(path, "band"))
            if band is not None and band not in bands:
                self.err(_join(path, "band"), m["band"], f"unknown time band {band!r}")
        per = 1
        if "per" in m:
            per = self.integer(m["per"], _join(path, "per"), 1, MAX_PER, f"a positive integer up to {MAX_PER}")
        first = nxt = 1
        if "increments" in m:
            inc, ipath = m["increments"], _join(path, "increments")
            what = f"two positive integers [first, next] up to {MAX_PER}"
            if not isinstance(inc, SequenceNode) or len(inc.value) != 2:
                self.err(ipath, inc, f"expected {what}")
                first = nxt = None
            else:
                first, nxt = (self.integer(x, ipath, 1, MAX_PER, what) for x in inc.value)
        connect = self.money(m["connect_fee"], _join(path, "connect_fee")) if "connect_fee" in m else 0
        tiers: list[model.Tier] = []
        if ("price" in m) == ("tiers" in m):
            self.err(path, node, "give either price or tiers")
        elif "price" in m:
            p = self.money(m["price"], _join(path, "price"))
            tiers = [model.Tier(None, p)] if p is not None else []
        else:
            tiers = self.tiers(m["tiers"], _join(path, "tiers"))
        if per is not None:
            for t in tiers:
                if t.price * per >= MAX_PRICE_TIMES_PER:
                    self.err(path, node, "price times per is too large for exact integer arithmetic")
                    break
        if None in (per, first, nxt, connect):
            return None
        return model.RateEntry(dest, band, per, first, nxt, connect, tuple(tiers))

    def tiers(self, node, path) -> list[model.Tier]:
        items = self.sequence(node, path)
        if not items:
            if items is not None:
                self.err(path, node, "at least one tier")
            return []
        out, prev = [], 0
        for i, tn in enumerate(items):
            tp = _join(path, i)
            tm = self.mapping(tn, tp, ("upto", "price"), ("price",))
            if tm is None:
                continue
            last = i == len(items) - 1
            upto = None
            if "upto" in tm:
                if last:
                    self.err(_join(tp, "upto"), tm["upto"], "the last tier has no upto")
                else:
                    upto = self.count(tm["upto"], _join(tp, "upto"))
                    if upto is not None and upto <= prev:
                        self.err(_join(tp, "upto"), tm["upto"], f"tiers must ascend: {upto} is not above {prev}")
                    elif upto is not None:
                        prev = upto
            elif not last:
                self.err(tp, tn, "only the last tier may lack upto")
            price = self.money(tm["price"], _join(tp, "price")) if "price" in tm else None
            if price is not None:
                out.append(model.Tier(upto, price))
        return out

    def discounts(self, node, services) -> dict[str, model.Discount]:
        out = {}
        if node is None:
            return out
        for name, dn in (self.mapping(node, "discounts") or {}).items():
            path = _join("discounts", name)
            dm = self.mapping(dn, path, ("service", "basis", "tiers"), ("service", "tiers"))
            if dm is None:
                continue
            service = self.string(dm["service"], _join(path, "service")) if "service" in dm else None
            if service is not None and service not in services:
                self.err(_join(path, "service"), dm["service"], f"unknown service {service!r}")
            basis = "usage"
            if "basis" in dm:
                basis = self.string(dm["basis"], _join(path, "basis"))
                if basis is not None and basis not in ("usage", "charge"):
                    self.err(_join(path, "basis"), dm["basis"], f"expected usage or charge, got {basis!r}")
                    basis = None
            tiers = []
            items = self.sequence(dm["tiers"], _join(path, "tiers")) if "tiers" in dm else None
            for i, tn in enumerate(items or []):
                tp = _join(_join(path, "tiers"), i)
                tm = self.mapping(tn, tp, ("from", "percent"), ("from", "percent"))
                if tm is None or "from" not in tm or "percent" not in tm:
                    continue
                fp = _join(tp, "from")
                if basis == "charge":
                    start = self.money(tm["from"], fp)
                else:
                    start = self.count(tm["from"], fp, lo=0)
                pct = self.percent(tm["percent"], _join(tp, "percent"))
                if start is not None:
                    if i == 0 and start != 0:
                        self.err(fp, tm["from"], "the first tier starts from 0")
                    elif tiers and start <= tiers[-1].start:
                        self.err(fp, tm["from"], "tiers must ascend")
                if start is not None and pct is not None:
                    tiers.append(model.DiscountTier(start, pct))
            if items is not None and not items:
                self.err(_join(path, "tiers"), dm["tiers"], "at least one tier")
            if service and basis:
                out[name] = model.Discount(name, service, basis, tuple(tiers))
        return out
