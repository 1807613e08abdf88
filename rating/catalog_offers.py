"""Catalog sections read by accounts and billing: offers (fees, allowances, promotions),
account_discounts, tax and billing settings (see docs/offers.md).

A mixin of the catalog parser (`rating.catalog._Parser`): it uses the parser's node helpers
(err, mapping, sequence, string, count, days, integer, money, percent, names_list, join) and
adds issues the same way, so every problem is reported with its path and line like the rest
of the catalog.
"""

from __future__ import annotations

from rating import model

_OFFER_KEYS = ("tariff", "discounts", "recurring", "one_time", "allowances", "account_discount",
               "promotions")


class OfferSections:
    """Parses the offer-side sections; returns None (or a default) for parts in error."""

    def listed(self, m: dict, key: str, path: str) -> list[tuple[str, object]]:
        """(path, node) of each item of the optional list `m[key]`; [] when absent or not a list."""
        if key not in m:
            return []
        lpath = self.join(path, key)
        return [(self.join(lpath, i), n) for i, n in enumerate(self.sequence(m[key], lpath) or [])]

    def account_discounts(self, node) -> dict[str, model.AccountDiscount]:
        out = {}
        for name, an in (self.mapping(node, "account_discounts") or {}).items():
            path = self.join("account_discounts", name)
            am = self.mapping(an, path, ("min_total", "percent", "cap"), ("percent",))
            if am is None:
                continue
            mt = self.money(am["min_total"], self.join(path, "min_total")) if "min_total" in am else 0
            pct = self.percent(am["percent"], self.join(path, "percent")) if "percent" in am else None
            cap = self.money(am["cap"], self.join(path, "cap")) if "cap" in am else None
            if mt is not None and pct is not None:
                out[name] = model.AccountDiscount(name, mt, pct, cap)
        return out

    def offers(self, node, tariffs, discounts, acc_discounts, dests, services) -> dict[str, model.Offer]:
        out = {}
        for name, on in (self.mapping(node, "offers") or {}).items():
            path = self.join("offers", name)
            om = self.mapping(on, path, _OFFER_KEYS)
            if om is None:
                continue
            tariff = None
            if "tariff" in om:
                tariff = self.string(om["tariff"], self.join(path, "tariff"))
                if tariff is not None and tariff not in tariffs:
                    self.err(self.join(path, "tariff"), om["tariff"], f"unknown tariff {tariff!r}")
            discs = ()
            if "discounts" in om:
                discs = self.names_list(om["discounts"], self.join(path, "discounts"), discounts, "discount") or ()
            recurring = self.money(om["recurring"], self.join(path, "recurring")) if "recurring" in om else 0
            one_time = []
            for fp, fn in self.listed(om, "one_time", path):
                fee = self.one_time_fee(fn, fp)
                if fee is not None:
                    one_time.append(fee)
            allowances = []
            for ap, an in self.listed(om, "allowances", path):
                a = self.allowance(an, ap, dests, services)
                if a is not None:
                    if any(x.name == a.name for x in allowances):
                        self.err(ap, an, f"allowance name {a.name!r} used twice")
                    allowances.append(a)
            acc = None
            if "account_discount" in om:
                acc = self.string(om["account_discount"], self.join(path, "account_discount"))
                if acc is not None and acc not in acc_discounts:
                    self.err(self.join(path, "account_discount"), om["account_discount"], f"unknown account discount {acc!r}")
            promos = []
            for pp, pn in self.listed(om, "promotions", path):
                pr = self.promotion(pn, pp, services)
                if pr is not None:
                    promos.append(pr)
            out[name] = model.Offer(name, tariff, tuple(discs), recurring or 0, tuple(one_time),
                                    tuple(allowances), acc, tuple(promos))
        return out

    def one_time_fee(self, node, path) -> model.OneTimeFee | None:
        fm = self.mapping(node, path, ("name", "amount"), ("name", "amount"))
        if not fm or "name" not in fm or "amount" not in fm:
            return None
        fname = self.string(fm["name"], self.join(path, "name"))
        amount = self.money(fm["amount"], self.join(path, "amount"))
        if fname is None or amount is None:
            return None
        return model.OneTimeFee(fname, amount)

    def allowance(self, node, path, dests, services) -> model.Allowance | None:
        m = self.mapping(node, path, ("name", "service", "units", "destinations"), ("name", "service", "units"))
        if m is None or not {"name", "service", "units"} <= m.keys():
            return None
        name = self.string(m["name"], self.join(path, "name"))
        service = self.string(m["service"], self.join(path, "service"))
        if service is not None and service not in services:
            self.err(self.join(path, "service"), m["service"], f"unknown service {service!r}")
            service = None
        units = self.count(m["units"], self.join(path, "units"))
        ds = None
        if "destinations" in m:
            ds = self.names_list(m["destinations"], self.join(path, "destinations"), dests, "destination")
            if ds is None:
                return None
        if None in (name, service, units):
            return None
        return model.Allowance(name, service, units, ds)

    def promotion(self, node, path, services) -> model.Promotion | None:
        m = self.mapping(node, path, ("on", "min_amount", "gift"), ("on", "gift"))
        if m is None or not {"on", "gift"} <= m.keys():
            return None
        on = self.string(m["on"], self.join(path, "on"))
        if on is not None and on not in ("subscribe", "topup"):
            self.err(self.join(path, "on"), m["on"], f"expected subscribe or topup, got {on!r}")
            on = None
        min_amount = 0
        if "min_amount" in m:
            if on == "subscribe":
                self.err(self.join(path, "min_amount"), m["min_amount"], "only a topup promotion has min_amount")
            min_amount = self.money(m["min_amount"], self.join(path, "min_amount"))
        gift = self.gift(m["gift"], self.join(path, "gift"), services)
        if gift is None or on is None or min_amount is None:
            return None
        return model.Promotion(on, gift, min_amount)

    def gift(self, node, gp, services) -> model.Gift | None:
        """Units of a service or money, valid `valid_days` from the day it is given."""
        g = self.mapping(node, gp, ("service", "units", "money", "valid_days"), ("valid_days",))
        if g is None:
            return None
        days = self.days(g["valid_days"], self.join(gp, "valid_days")) if "valid_days" in g else None
        service = units = money = None
        if "money" in g and ("service" in g or "units" in g):
            self.err(gp, node, "a gift is either units (service and units) or money, not both")
            return None
        if "money" in g:
            money = self.money(g["money"], self.join(gp, "money"))
            if money is None:
                return None
        elif "service" in g and "units" in g:
            service = self.string(g["service"], self.join(gp, "service"))
            if service is not None and service not in services:
                self.err(self.join(gp, "service"), g["service"], f"unknown service {service!r}")
            units = self.count(g["units"], self.join(gp, "units"))
            if service not in services or units is None:
                return None
        else:
            self.err(gp, node, "a gift needs either service and units, or money")
            return None
        if days is None:
            return None
        return model.Gift(service, units, money, days)

    def tax(self, node) -> model.Tax | None:
        m = self.mapping(node, "tax", ("name", "percent"), ("name", "percent"))
        if not m or not {"name", "percent"} <= m.keys():
            return None
        name, pct = self.string(m["name"], "tax.name"), self.percent(m["percent"], "tax.percent")
        return model.Tax(name, pct) if name is not None and pct is not None else None

    def billing(self, node) -> model.BillingSettings:
        m = self.mapping(node, "billing", ("decimals", "due_days", "grace_days")) or {}
        d = model.BillingSettings()
        dec = self.integer(m["decimals"], "billing.decimals", 0, 6, "an integer 0..6") if "decimals" in m else d.decimals
        due = self.days(m["due_days"], "billing.due_days", lo=0) if "due_days" in m else d.due_days
        grace = self.days(m["grace_days"], "billing.grace_days", lo=0) if "grace_days" in m else d.grace_days
        return model.BillingSettings(dec if dec is not None else 2, due if due is not None else 14, grace if grace is not None else 10)
