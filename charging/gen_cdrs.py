"""Seeded, vectorised CDR columns (numpy) and CDR CSV tables (pyarrow).

Promoted from benchmarks/gen.py (which imports these), and used by `ccs gen cdrs` and
`ccs replay --generate`: log-normal durations and volumes, destinations drawn by a Zipf law
over prefixes, numbers of 10..12 digits. Same seed, same columns; nothing here is random at
import time.

`CdrModel` draws CDRs for a catalog so that every CDR is rateable by every base offer's
tariff: a destination is only drawn where each such tariff has an entry of the service for
its destination name (or for any destination) in any time band (see `CdrModel.for_catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SERVICES = ("voice", "sms", "data")
SERVICE_SHARE = (0.6, 0.25, 0.15)
UNITS = ("seconds", "events", "bytes")  # the unit of each of SERVICES
START_2024_03_01 = 1709251200  # UTC; the month holds the EU change to summer time
MONTH_S = 31 * 86400
ZIPF_A = 1.3
CDR_COLUMNS = ("cdr_id", "account", "service", "start", "usage", "destination")


class GenError(ValueError):
    """What a generator cannot do with its input (the message names the field)."""


def usage_column(rng: np.random.Generator, service: np.ndarray) -> np.ndarray:
    """Usage per CDR of `service` (indices into SERVICES): voice seconds log-normal (median
    ~67 s), one SMS, data bytes log-normal (median ~2 MB)."""
    n = len(service)
    return np.where(
        service == 0,
        np.round(rng.lognormal(4.2, 1.1, n)),
        np.where(service == 1, 1, np.round(rng.lognormal(14.5, 2.0, n))),
    ).astype(np.int64)


def zipf_ranks(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n ranks in 0..k-1, rank 0 the most frequent (Zipf, a = 1.3, clipped to k)."""
    return np.minimum(rng.zipf(ZIPF_A, n), k) - 1


def numbers(rng: np.random.Generator, pval: np.ndarray, plen: np.ndarray):
    """E.164 numbers of 10..12 digits (at least the prefix) starting with the given prefixes
    (value, length): (value int64, length int64). Leading zeros live in the length."""
    n = len(pval)
    total = np.maximum(rng.integers(10, 13, n), plen)
    suffix_len = total - plen
    suffix = rng.integers(0, 10 ** 12, n, dtype=np.int64) % (10 ** suffix_len)
    return pval * 10 ** suffix_len + suffix, total


def cdr_arrays(n: int, prefixes: list[str], seed: int = 2, n_accounts: int = 100_000) -> dict[str, np.ndarray]:
    """n CDRs as arrays: cdr (int id), account (int), service (index into SERVICES), start (UTC s),
    usage, dest (digits as int64), dest_len (int8; 0 for data). Rows are in random start order.

    Durations and volumes are log-normal; destinations follow a Zipf law over `prefixes`
    (benchmarks/gen.py's catalog: none starts with 0).
    """
    rng = np.random.default_rng(seed)
    service = rng.choice(len(SERVICES), size=n, p=SERVICE_SHARE).astype(np.int32)
    usage = usage_column(rng, service)
    rank = zipf_ranks(rng, n, len(prefixes))
    plen = np.array([len(p) for p in prefixes], np.int64)[rank]
    pval = np.array([int(p) for p in prefixes], np.int64)[rank]
    dest, total = numbers(rng, pval, plen)
    is_data = service == 2
    return {
        "cdr": np.arange(n, dtype=np.int64),
        "account": rng.integers(0, n_accounts, n).astype(np.int32),
        "service": service,
        "start": START_2024_03_01 + rng.integers(0, MONTH_S, n),
        "usage": usage,
        "dest": np.where(is_data, 0, dest),
        "dest_len": np.where(is_data, 0, total).astype(np.int8),
    }


def digit_strings(value: np.ndarray, length: np.ndarray) -> pa.Array:
    """Each value written with exactly its length of digits (zero-padded); "" for length 0."""
    text = pc.cast(pa.array(value.astype(np.int64)), pa.string())
    out = text
    for size in np.unique(length[length > 0]).tolist():
        out = pc.if_else(pa.array(length == size), pc.utf8_lpad(text, int(size), "0"), out)
    return pc.if_else(pa.array(length == 0), "", out)


def iso_starts(start: np.ndarray) -> pa.Array:
    """UTC seconds as ISO 8601 text ending in Z."""
    return pc.strftime(pa.array(start.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%SZ")


def cdr_table(cdrs: dict[str, np.ndarray], accounts: pa.Array | None = None,
              id_prefix: str = "c", id_width: int = 10) -> pa.Table:
    """The CDR file's columns (all text) of `cdr_arrays`-shaped arrays: ids
    `<id_prefix>000000001`, accounts `a17` (or `accounts[account]`), ISO starts in Z."""
    ids = pc.utf8_lpad(pc.cast(pa.array(cdrs["cdr"]), pa.string()), id_width, "0")
    if accounts is None:
        account = pc.binary_join_element_wise(
            "a", pc.cast(pa.array(cdrs["account"]), pa.string()), "")
    else:
        account = accounts.take(pa.array(cdrs["account"]))
    dest_len = cdrs["dest_len"].astype(np.int64)
    return pa.table({
        "cdr_id": pc.binary_join_element_wise(id_prefix, ids, ""),
        "account": account,
        "service": pa.array(np.array(SERVICES)[cdrs["service"]]),
        "start": iso_starts(cdrs["start"]),
        "usage": pc.cast(pa.array(cdrs["usage"]), pa.string()),
        "destination": digit_strings(cdrs["dest"], dest_len),
    })


def write_table(path: str | Path, table: pa.Table, quoting: str = "needed") -> None:
    """A CSV of text columns; `quoting` "none" for values that never need quotes (Arrow's
    "needed" quotes every text value, and the header whatever the style)."""
    if quoting != "none":
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style=quoting))
        return
    with pa.OSFile(str(path), "wb") as out:
        out.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False,
                                                       quoting_style="none"))


def write_cdr_csv(path: str | Path, cdrs: dict[str, np.ndarray]) -> None:
    """The CDR file of `cdr_arrays` output: ids `c000000001`, accounts `a17`, ISO starts in Z."""
    write_table(path, cdr_table(cdrs))


# --- CDRs a catalog rates ---------------------------------------------------------------

class PrefixIndex:
    """Longest-prefix match of digit strings, vectorised over (value, length) numbers."""

    def __init__(self, prefixes: list[str], owners: list[int]):
        self.by_len: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for size in sorted({len(p) for p in prefixes}, reverse=True):
            pairs = sorted((int(p or 0), o) for p, o in zip(prefixes, owners, strict=True)
                           if len(p) == size)
            self.by_len[size] = (np.array([v for v, _ in pairs], np.int64),
                                 np.array([o for _, o in pairs], np.int64))

    def owner(self, value: np.ndarray, length: np.ndarray) -> np.ndarray:
        """The owner of the longest prefix of each number; -1 where none matches."""
        out = np.full(len(value), -1, np.int64)
        for size, (vals, owners) in self.by_len.items():  # longest first
            todo = (out < 0) & (length >= size)
            if not todo.any():
                continue
            head = value[todo] // 10 ** (length[todo] - size)
            at = np.minimum(np.searchsorted(vals, head), len(vals) - 1)
            hit = vals[at] == head
            idx = np.flatnonzero(todo)
            out[idx[hit]] = owners[at[hit]]
        return out


def _always_rated(entries, name: str | None) -> bool:
    """Some entry of the service matches destination `name` (None: an empty destination)
    in every time band."""
    return any(e.band is None and (e.destination is None or e.destination == name)
               for e in entries)


@dataclass
class CdrModel:
    """What `draw` picks from: services with their units and shares, and per service with
    destinations the prefixes it may draw (most popular first) and which names rate."""

    services: tuple[str, ...]
    units: tuple[str, ...]
    shares: tuple[float, ...]
    prefixes: dict[str, list[str]]  # service -> prefixes to draw ("" allowed); absent: none
    index: PrefixIndex | None = None
    rateable: dict[str, np.ndarray] | None = None  # service -> bool per destination name

    @classmethod
    def for_catalog(cls, catalog) -> CdrModel:
        """voice, sms and data where every base offer's tariff rates them; voice and SMS
        destinations from the catalog's prefixes whose names every such tariff rates."""
        tariffs = sorted({o.tariff for o in catalog.offers.values() if o.tariff is not None}) \
            or sorted(catalog.tariffs)
        if not tariffs:
            raise GenError("catalog: no tariff to rate CDRs with")
        names = list(catalog.destinations)
        all_prefixes = [(p, k) for k, n in enumerate(names) for p in catalog.destinations[n]]
        index = PrefixIndex([p for p, _ in all_prefixes], [k for _, k in all_prefixes])
        services, units, shares, prefixes, rateable = [], [], [], {}, {}
        for svc, unit, share in zip(SERVICES, UNITS, SERVICE_SHARE, strict=True):
            tables = [catalog.tariffs[t].get(svc) for t in tariffs]
            if any(not entries for entries in tables):
                continue
            if svc == "data":
                if not all(_always_rated(entries, None) for entries in tables):
                    continue
            else:
                ok = np.array([all(_always_rated(e, n) for e in tables) for n in names], bool)
                drawn = [p for p, k in all_prefixes if ok[k]]
                if not drawn:
                    continue
                prefixes[svc], rateable[svc] = drawn, ok
            services.append(svc)
            units.append(unit)
            shares.append(share)
        if not services:
            raise GenError("catalog: no tariff of a base offer rates voice, sms or data "
                           "for every destination of some prefix")
        return cls(tuple(services), tuple(units), tuple(shares), prefixes, index, rateable)

    @classmethod
    def default(cls, voice_prefixes=("49151", "49170", "4930", "33", "1")) -> CdrModel:
        """Without a catalog: voice and SMS to a few German, French and US numbers."""
        dests = list(voice_prefixes)
        return cls(SERVICES, UNITS, SERVICE_SHARE, {"voice": dests, "sms": dests})

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """n CDRs: service (index into `services`), usage, dest, dest_len (0: none)."""
        p = np.array(self.shares) / sum(self.shares)
        service = rng.choice(len(self.services), size=n, p=p).astype(np.int32)
        builtin = np.array([SERVICES.index(s) for s in self.services])[service]
        usage = usage_column(rng, builtin)
        dest = np.zeros(n, np.int64)
        dest_len = np.zeros(n, np.int64)
        for k, svc in enumerate(self.services):
            rows = np.flatnonzero(service == k)
            if svc in self.prefixes and len(rows):
                dest[rows], dest_len[rows] = self._destinations(rng, svc, len(rows))
        return {"service": service, "usage": usage, "dest": dest, "dest_len": dest_len}

    def _destinations(self, rng, svc: str, n: int):
        prefixes = self.prefixes[svc]
        pval_all = np.array([int(p or 0) for p in prefixes], np.int64)
        plen_all = np.array([len(p) for p in prefixes], np.int64)
        value = np.zeros(n, np.int64)
        length = np.zeros(n, np.int64)
        todo = np.arange(n)
        for _ in range(64):  # a number may fall under a longer prefix of a name that fails
            rank = zipf_ranks(rng, len(todo), len(prefixes))
            v, ln = numbers(rng, pval_all[rank], plen_all[rank])
            first = v // 10 ** (ln - 1)  # E.164: no leading 0 (an empty prefix may give one)
            v = np.where(first == 0, v + int(rng.integers(1, 10)) * 10 ** (ln - 1), v)
            value[todo], length[todo] = v, ln
            if self.index is None:
                return value, length
            owner = self.index.owner(v, ln)
            bad = (owner < 0) | ~self.rateable[svc][np.maximum(owner, 0)]
            todo = todo[bad]
            if not len(todo):
                return value, length
        raise GenError(f"catalog: cannot draw rateable {svc} destinations")
