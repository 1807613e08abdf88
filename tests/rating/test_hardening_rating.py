"""Rating hardening (issue 11): a discount listed twice, standings that would pass 2^53."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rating import engine
from rating.catalog import load_catalog, parse_catalog
from rating.compiler import STANDING_BOUND, compile_catalog
from rating.engine import (
    REASONS,
    Accumulators,
    AllowanceTable,
    Plan,
    Quote,
    price,
    price_enquiry,
    rate_batch,
)
from rating.money import format_money
from tests.rating.spec_ccs import HEADER, run_ccs
from tests.rating.test_engine import make_batch, utc

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "catalog.yaml"
MORNING, EVENING = utc(2024, 1, 9, 9, 0), utc(2024, 1, 9, 21, 0)


@pytest.fixture(scope="module")
def compiled():
    return compile_catalog(load_catalog(EXAMPLE))


def amounts(out) -> list[tuple[str, str, str]]:
    return [(format_money(int(c), 4), format_money(int(d), 4), format_money(int(n), 4))
            for c, d, n in zip(out.charge, out.discount, out.net_charge, strict=True)]


VOICE_TWICE = [  # to DE_FIXED: 0.02 per 60 s, increments [1, 1], no band
    {"service": "voice", "start": MORNING, "usage": 40_000, "dest": "4930123456"},
    {"service": "voice", "start": EVENING, "usage": 600, "dest": "4930123456"},
]


# -- item 1: a discount listed twice ------------------------------------------------------

def test_ccs_rate_refuses_an_accounts_line_listing_a_discount_twice(tmp_path):
    acc = tmp_path / "accounts.csv"
    acc.write_text("account,tariff,discounts\nbob,std,loyal_voice\nalice,std,loyal_voice;loyal_voice\n")
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text(f"{HEADER}\nv1,alice,voice,2024-01-09T09:00:00Z,40000,4930123456\n"
                    "v2,alice,voice,2024-01-09T21:00:00Z,600,4930123456\n")
    proc = run_ccs("rate", "--catalog", EXAMPLE, "--cdrs", cdrs, "--accounts", acc)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"ccs rate: {acc}:3: discounts: discount 'loyal_voice' listed twice\n"


def test_engine_refuses_a_plan_listing_a_discount_twice(compiled):
    plan = Plan("std", ("loyal_voice", "data_spender", "loyal_voice"))
    msg = "plans[0].discounts: discount 'loyal_voice' listed twice"
    with pytest.raises(ValueError, match=msg.replace("[", r"\[")):
        rate_batch(compiled, make_batch(compiled, VOICE_TWICE), [plan],
                   Accumulators.zeros(compiled, 1))
    with pytest.raises(ValueError, match=r"plans\[0\]\.discounts: discount 'loyal_voice' listed twice"):
        price_enquiry(compiled, plan, "voice", MORNING, "4930123456", 60)
    d = compiled.discount_id["loyal_voice"]
    with pytest.raises(ValueError, match="discounts: discount id 0 listed twice"):
        price(compiled, 2, 60, 0, [(d, 0), (d, 100)])


def test_kernel_reads_every_discount_standing_before_any_grows(compiled, monkeypatch):
    # the kernel given one discount row twice for the service (what a plan listing it twice
    # used to give): both copies read the standing from before the CDR
    real = engine._discounts_by_service

    def doubled(c, doff, dids):
        off, rows = real(c, doff, dids)
        counts = np.diff(off)
        return (np.concatenate([[0], np.cumsum(2 * counts)]).astype(np.int64),
                np.repeat(rows, 2).astype(np.int32))

    monkeypatch.setattr(engine, "_discounts_by_service", doubled)
    acc = Accumulators.zeros(compiled, 1)
    out = rate_batch(compiled, make_batch(compiled, VOICE_TWICE), [Plan("std", ("loyal_voice",))], acc)
    # v1: basis 0 before it: 0 %; v2: basis 40,000 >= 30,000: 25 % per copy
    assert amounts(out) == [("13.3333", "0.0000", "13.3333"), ("0.2000", "0.1000", "0.1000")]
    assert acc.discount_basis[0, compiled.discount_id["loyal_voice"]] == 2 * 40_600


def test_two_discounts_of_one_service_and_basis_both_read_the_pre_cdr_standing():
    text = EXAMPLE.read_text().replace(
        "  data_spender:\n",
        "  loyal_too:\n    service: voice\n    tiers:\n      - {from: 0, percent: \"0\"}\n"
        "      - {from: 30000, percent: \"25\"}\n  data_spender:\n")
    c = compile_catalog(parse_catalog(text))
    acc = Accumulators.zeros(c, 1)
    out = rate_batch(c, make_batch(c, VOICE_TWICE), [Plan("std", ("loyal_voice", "loyal_too"))], acc)
    assert amounts(out) == [("13.3333", "0.0000", "13.3333"), ("0.2000", "0.1000", "0.1000")]


# -- item 3: a standing that would pass 2^53 is refused -----------------------------------

BIG_DATA = 9_007_199_254_739_968  # 2^53 - 1024, a whole number of KiB


def test_tier_standing_that_would_pass_2_pow_53_rejects_the_cdr_as_overflow(compiled):
    assert STANDING_BOUND == 2**53 and REASONS[-1] == "overflow"
    rows = [{"service": "data", "start": MORNING + k, "usage": BIG_DATA} for k in range(1030)]
    acc = Accumulators.zeros(compiled, 1)
    out = rate_batch(compiled, make_batch(compiled, rows), [Plan("std")], acc)
    assert [REASONS[r] for r in out.reason] == [""] + ["overflow"] * 1029
    # 1 GiB at 0.01 per MiB, the rest at 0.002: 17,179,877.375998046875 -> 17179877.3760
    assert amounts(out)[0] == ("17179877.3760", "0.0000", "17179877.3760")
    assert set(amounts(out)[1:]) == {("0.0000", "0.0000", "0.0000")}
    assert out.rated_usage.tolist() == [BIG_DATA] + [0] * 1029
    assert acc.tier_usage[0, compiled.service_id["data"]] == BIG_DATA


def test_ccs_rate_names_the_overflow(tmp_path):
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text(HEADER + "\n" + "".join(
        f"d{k:04d},a,data,2024-01-09T09:{k // 60 % 60:02d}:{k % 60:02d}Z,{BIG_DATA},\n" for k in range(1030)))
    proc = run_ccs("rate", "--catalog", EXAMPLE, "--cdrs", cdrs, "--tariff", "std")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in proc.stdout.splitlines()[1:]]
    assert rows[0][6:] == ["rated", "", "", "peak", str(BIG_DATA), "17179877.3760", "0.0000", "17179877.3760"]
    assert {tuple(r[6:]) for r in rows[1:]} == {
        ("rejected", "overflow", "", "", "0", "0.0000", "0.0000", "0.0000")}
    assert len(rows) == 1030
    assert proc.stderr.startswith("ccs rate: rated 1, duplicate 0, rejected 1029, total net charge 17179877.3760")


SMS_SPENDER = """\
currency: EUR
timezone: UTC
rounding: {decimals: 4, method: half_up}
tariffs:
  t:
    sms:
      - {price: "1000"}
discounts:
  spender:
    service: sms
    basis: charge
    tiers:
      - {from: "0", percent: "0"}
      - {from: "8000000000", percent: "10"}
"""


def test_charge_basis_that_would_pass_2_pow_53_rejects_the_cdr():
    c = compile_catalog(parse_catalog(SMS_SPENDER))
    acc = Accumulators.zeros(c, 1)
    rows = [{"service": "sms", "start": MORNING + k, "usage": 10**6} for k in range(11)]
    out = rate_batch(c, make_batch(c, rows), [Plan("t", ("spender",))], acc)
    # each CDR adds 10^15 micro-units to the basis: the 10th would bring it to 10^16 > 2^53
    assert [REASONS[r] for r in out.reason] == [""] * 9 + ["overflow"] * 2
    assert amounts(out)[8] == ("1000000000.0000", "100000000.0000", "900000000.0000")
    assert acc.discount_basis[0, 0] == 9 * 10**15 and acc.tier_usage[0, c.service_id["sms"]] == 9 * 10**6


def test_an_overflowing_cdr_takes_nothing_from_allowances(compiled):
    data = compiled.service_id["data"]
    al = AllowanceTable(
        offsets=np.array([0, 1], np.int64), service=np.array([data], np.int32),
        remaining=np.array([1024], np.int64), valid_from=np.array([0], np.int64),
        valid_to=np.array([2**62], np.int64), dest_offsets=np.array([0, 0], np.int64),
        dest_ids=np.zeros(0, np.int32))
    acc = Accumulators.zeros(compiled, 1)
    acc.tier_usage[0, data] = STANDING_BOUND - 1024
    rows = [{"service": "data", "start": MORNING, "usage": 2048},  # 1024 uncovered: 2^53
            {"service": "data", "start": MORNING + 1, "usage": 1024}]  # covered whole: rated
    out = rate_batch(compiled, make_batch(compiled, rows), [Plan("std")], acc, al)
    assert [REASONS[r] for r in out.reason] == ["overflow", ""]
    assert out.covered.tolist() == [0, 1024] and out.charge.tolist() == [0, 0]
    assert al.remaining.tolist() == [0] and acc.tier_usage[0, data] == STANDING_BOUND - 1024


@pytest.mark.parametrize("field,value", [("tier_usage", STANDING_BOUND), ("tier_usage", -1),
                                         ("discount_basis", STANDING_BOUND)])
def test_rate_batch_refuses_accumulators_out_of_range(compiled, field, value):
    acc = Accumulators.zeros(compiled, 2)
    getattr(acc, field)[1, 0] = value
    with pytest.raises(ValueError, match=f"acc.{field}: standings must be within 0..{STANDING_BOUND - 1}"):
        rate_batch(compiled, make_batch(compiled, VOICE_TWICE), [Plan("std")], acc)


def test_scalar_api_refuses_standings_beyond_range(compiled):
    e = engine.resolve(compiled, "std", "data", MORNING, "").entry
    d = compiled.discount_id["data_spender"]
    for bad in (STANDING_BOUND, 2**63, 2**70):
        with pytest.raises(ValueError, match=f"tier_standing: {bad} is outside 0..{STANDING_BOUND - 1}"):
            price(compiled, e, 1024, bad, [])
        with pytest.raises(ValueError, match=rf"discounts\[0\]: standing {bad} is outside"):
            price(compiled, e, 1024, 0, [(d, bad)])
    with pytest.raises(ValueError, match="tier_standing: .* would pass 2\\^53 with 2048 more"):
        price(compiled, e, 2048, STANDING_BOUND - 1024, [])
    assert price(compiled, e, 1024, STANDING_BOUND - 1025, []).charge == 0  # 1024 B at 0.002/MiB
    quote = price_enquiry(compiled, Plan("std"), "data", MORNING, "", 2048, STANDING_BOUND - 1024)
    assert quote == Quote("overflow", None, None, 0, "0.0000", "0.0000", "0.0000")
    # 1 MiB at 0.005 adds 5,000 micro-units to the charge basis
    quote = price_enquiry(compiled, Plan("flat", ("data_spender",)), "data", MORNING, "", 2**20, 0,
                          {"data_spender": STANDING_BOUND - 5000})
    assert quote.reason == "overflow"
    with pytest.raises(ValueError, match="discount_standing: data_spender: standing -1 is outside"):
        price_enquiry(compiled, Plan("flat", ("data_spender",)), "data", MORNING, "", 1024, 0,
                      {"data_spender": -1})
