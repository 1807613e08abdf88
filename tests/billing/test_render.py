"""billing.render: bill JSON, the printable HTML page, the summary CSV and the export folder.

The pages are parsed with html.parser and checked by structure (sections, rows, totals)."""

from __future__ import annotations

import copy
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from billing import render
from billing.render import (
    BILL_KEYS,
    STATEMENT_NOTE,
    BillFormatError,
    bill_html,
    bill_json,
    export_stem,
    summary_csv,
    write_export,
)


def line(kind: str, name: str, amount: str, account: str = "") -> dict:
    return {"kind": kind, "name": name, "account": account, "amount": amount}


def invoice() -> dict:
    """Parent P1 with children C1 and C2, two account discounts and VAT 19%.
    Sections: P1 12.34 + 9.99 + 5.00 = 27.33; C1 20.00 + 4.99 = 24.99; C2 0.50 + 1.18 = 1.68.
    subtotal 27.33 + 24.99 + 1.68 = 54.00; big_bill 5% = 2.70 (cap 10.00), loyal 1% = 0.54:
    account_discount -3.24; tax 19% of 50.76 = 9.6444 -> 9.64; total 50.76 + 9.64 = 60.40."""
    return {
        "account": "P1", "cycle": "2026-11", "status": "final", "type": "invoice",
        "currency": "EUR", "period_start": "2026-11-01", "period_end": "2026-11-30",
        "due_date": "2026-12-14", "cycle_days": 30,
        "lines": [
            line("usage", "voice", "12.34"),
            line("recurring", "smart_m", "9.99"),
            line("one_time", "smart_m:activation", "5.00"),
            line("usage", "data", "20.00", "C1"),
            line("recurring", "smart_s", "4.99", "C1"),
            line("usage", "sms", "0.50", "C2"),
            line("adjustment", "late:2026-10:voice", "1.18", "C2"),
            line("account_discount", "big_bill", "-2.70"),
            line("account_discount", "loyal", "-0.54"),
            line("tax", "VAT", "9.64"),
        ],
        "subtotal": "54.00", "account_discount": "-3.24", "tax": "9.64", "total": "60.40",
        "amount_due": "60.40",
    }


def statement() -> dict:
    """Prepaid S1: usage 3.00 + recurring 9.99 = 12.99; VAT 19% = 2.4681 -> 2.47;
    total 15.46; nothing due (charged online / debited from the balance)."""
    return {
        "account": "S1", "cycle": "2026-11", "status": "draft", "type": "statement",
        "currency": "EUR", "period_start": "2026-11-01", "period_end": "2026-11-30",
        "due_date": "2026-12-14", "cycle_days": 30,
        "lines": [line("usage", "voice", "3.00"), line("recurring", "smart_m", "9.99"),
                  line("tax", "VAT", "2.47")],
        "subtotal": "12.99", "account_discount": "0.00", "tax": "2.47", "total": "15.46",
        "amount_due": "0.00",
    }


# ---------------------------------------------------------------------------------------------
# a small tree of the page, from html.parser

VOID = {"meta", "br", "hr", "img", "link", "input"}


class Node:
    def __init__(self, tag: str, attrs: dict):
        self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []

    @property
    def text(self) -> str:
        return " ".join("".join(p if isinstance(p, str) else p.text for p in self.parts).split())

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes()):
                found.append(child)
            found.extend(child.all(tag, cls))
        return found

    def one(self, tag: str | None = None, cls: str | None = None) -> Node:
        found = self.all(tag, cls)
        assert len(found) == 1, (tag, cls, len(found))
        return found[0]


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].parts.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def sections(doc: Node) -> list[tuple[str, list[list[str]], str]]:
    """(heading, [[item, detail, amount] per line], section sum) per section."""
    return [(s.one("h2").text, [[td.text for td in tr.all("td")] for tr in s.all("tr", "line")],
             s.one("tr", "section-sum").one("td").text) for s in doc.all("section")]


def totals(doc: Node) -> list[tuple[str, str, str]]:
    """(row class, label, amount cell) of the totals table."""
    return [(tr.classes()[0], tr.all("th")[0].text if tr.all("th") else "", tr.all("td")[0].text)
            for tr in doc.one("table", "totals").all("tr")]


# ---------------------------------------------------------------------------------------------
# HTML


def test_invoice_page_sections_sums_and_totals():
    page = bill_html(invoice(), operator="Telco GmbH")
    doc = parse(page)
    assert doc.one("div", "operator").text == "Telco GmbH"
    assert doc.one("h1").text == "Invoice"
    assert doc.one("td", "account").text == "P1"
    assert doc.one("td", "cycle").text == "2026-11"
    assert doc.one("td", "period").text == "2026-11-01 – 2026-11-30"
    assert doc.one("td", "due-date").text == "2026-12-14"
    assert doc.one("td", "currency").text == "EUR"
    assert sections(doc) == [
        ("Account P1", [["Usage", "voice", "12.34"], ["Recurring fee", "smart_m", "9.99"],
                        ["One-time fee", "smart_m:activation", "5.00"]], "27.33"),
        ("Account C1", [["Usage", "data", "20.00"], ["Recurring fee", "smart_s", "4.99"]], "24.99"),
        ("Account C2", [["Usage", "sms", "0.50"], ["Late usage of 2026-10", "voice", "1.18"]],
         "1.68"),
    ]
    assert totals(doc) == [
        ("subtotal", "Subtotal", "54.00 EUR"),
        ("account-discount", "Account discount big_bill", "-2.70 EUR"),
        ("account-discount", "Account discount loyal", "-0.54 EUR"),
        ("tax", "VAT", "9.64 EUR"),
        ("total", "Total", "60.40 EUR"),
        ("amount-due", "Amount due by 2026-12-14", "60.40 EUR"),
    ]
    # every amount cell is right aligned by the page's own CSS, printable, self-contained
    amount_cells = doc.all("td", "amount")
    assert len(amount_cells) == 7 + 3 + 6
    style = doc.one("style").text
    assert ".amount { text-align: right;" in style and "@media print" in style
    assert not doc.all("script") and not doc.all("link") and not doc.all("img")
    assert "http" not in page and "Draft" not in page and "Generated" not in page


def test_statement_page_says_nothing_to_pay():
    doc = parse(bill_html(statement()))
    assert doc.one("h1").text == "Statement Draft"
    assert doc.one("span", "draft").text == "Draft"
    assert doc.all("td", "due-date") == []  # nothing is due, so no due date
    assert sections(doc) == [
        ("Account S1", [["Usage", "voice", "3.00"], ["Recurring fee", "smart_m", "9.99"]], "12.99"),
    ]
    rows = totals(doc)
    assert rows[:3] == [("subtotal", "Subtotal", "12.99 EUR"), ("tax", "VAT", "2.47 EUR"),
                        ("total", "Total", "15.46 EUR")]
    assert rows[3] == ("amount-due", "", STATEMENT_NOTE)
    assert STATEMENT_NOTE == "Nothing to pay: charged to your prepaid balance"
    assert "0.00" not in doc.one("table", "totals").text


def test_owner_without_lines_and_no_tax_line():
    """A parent with no lines of its own still gets its section (sum 0.00); a catalog without
    tax has no tax line, the page prints the bill's tax 0.00."""
    bill = invoice()
    bill["lines"] = [line("usage", "voice", "1.00", "C1")]
    bill.update(subtotal="1.00", account_discount="0.00", tax="0.00", total="1.00",
                amount_due="1.00")
    doc = parse(bill_html(bill))
    assert sections(doc) == [("Account P1", [], "0.00"),
                             ("Account C1", [["Usage", "voice", "1.00"]], "1.00")]
    assert doc.all("section")[0].one("tr", "empty").text == "No charges"
    assert totals(doc)[1] == ("tax", "Tax", "0.00 EUR")


def test_section_sum_keeps_the_bills_decimals():
    """billing.decimals 0 (JPY): 100 + 250 = 350, printed without decimals; 3 decimals:
    1.005 + 2.000 = 3.005."""
    bill = statement()
    bill.update(currency="JPY", lines=[line("usage", "voice", "100"), line("usage", "data", "250")],
                subtotal="350", tax="0", total="350", amount_due="0", account_discount="0")
    assert sections(parse(bill_html(bill)))[0][2] == "350"
    bill.update(lines=[line("usage", "voice", "1.005"), line("usage", "data", "2.000")],
                subtotal="3.005", tax="0.000", total="3.005", amount_due="0.000",
                account_discount="0.000")
    assert sections(parse(bill_html(bill)))[0][2] == "3.005"


def test_markup_in_ids_names_and_operator_is_escaped():
    evil = "<script>alert(1)</script>"
    bill = invoice()
    bill["account"] = evil
    bill["lines"][0]["name"] = 'x"><img src=y onerror=alert(2)>'
    bill["lines"][3]["account"] = bill["lines"][4]["account"] = "C1<b>"
    page = bill_html(bill, operator="A & B <i>", generated="<script>")
    assert "<script" not in page.lower() and "<img" not in page and "<b>" not in page
    assert "<i>" not in page
    doc = parse(page)
    assert doc.one("td", "account").text == evil
    assert doc.all("section")[0].one("h2").text == f"Account {evil}"
    assert doc.all("section")[1].one("h2").text == "Account C1<b>"
    assert sections(doc)[0][1][0][1] == 'x"><img src=y onerror=alert(2)>'
    assert doc.one("div", "operator").text == "A & B <i>"
    assert doc.one("footer").text == "Generated <script>"
    assert not doc.all("script") and not doc.all("img") and not doc.all("b")
    assert evil in doc.one("title").text


def test_same_bill_same_bytes_and_generated_only_when_given():
    a, b = bill_html(invoice()), bill_html(copy.deepcopy(invoice()))
    assert a == b
    assert bill_json(invoice()) == bill_json(copy.deepcopy(invoice()))
    stamped = bill_html(invoice(), generated="2026-12-01 06:00 UTC")
    assert parse(stamped).one("footer").text == "Generated 2026-12-01 06:00 UTC"
    assert parse(a).all("footer") == []


# ---------------------------------------------------------------------------------------------
# JSON


def test_bill_json_exact_bytes():
    bill = {
        "account": "A1", "cycle": "2026-11", "status": "final", "type": "invoice",
        "currency": "EUR", "period_start": "2026-11-01", "period_end": "2026-11-30",
        "due_date": "2026-12-14", "cycle_days": 30,
        "lines": [line("recurring", "grüß", "9.99")],
        "subtotal": "9.99", "account_discount": "0.00", "tax": "0.00", "total": "9.99",
        "amount_due": "9.99",
    }
    expected = """{
  "account": "A1",
  "account_discount": "0.00",
  "amount_due": "9.99",
  "currency": "EUR",
  "cycle": "2026-11",
  "cycle_days": 30,
  "due_date": "2026-12-14",
  "lines": [
    {
      "account": "",
      "amount": "9.99",
      "kind": "recurring",
      "name": "grüß"
    }
  ],
  "period_end": "2026-11-30",
  "period_start": "2026-11-01",
  "status": "final",
  "subtotal": "9.99",
  "tax": "0.00",
  "total": "9.99",
  "type": "invoice"
}
""".encode()
    assert bill_json(bill) == expected
    assert json.loads(expected) == bill


@pytest.mark.parametrize("key", BILL_KEYS)
def test_missing_key_is_refused_by_name(key):
    bill = invoice()
    del bill[key]
    for export in (bill_json, bill_html, lambda b: summary_csv([b])):
        with pytest.raises(BillFormatError) as e:
            export(bill)
        assert key in str(e.value)
    with pytest.raises(ValueError, match=f"^{key}: missing from the bill$"):
        bill_json(bill)


@pytest.mark.parametrize("path, value, field", [
    (("lines", 0, "amount"), 12.34, "lines[0].amount"),
    (("total",), 60.4, "total"),
    (("cycle_days",), 30.0, "cycle_days"),
    (("extra",), {"rate": [1, 0.19]}, "extra.rate[1]"),
])
def test_a_float_anywhere_is_refused(path, value, field):
    bill = invoice()
    target = bill
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(BillFormatError) as e:
        bill_json(bill)
    assert e.value.field == field and "float" in str(e.value)


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b["lines"][1].pop("kind"), "lines[1].kind"),
    (lambda b: b["lines"][1].update(kind="bonus"), "lines[1].kind"),
    (lambda b: b["lines"][2].update(amount="5,00"), "lines[2].amount"),
    (lambda b: b["lines"][2].update(amount=5), "lines[2].amount"),
    (lambda b: b["lines"][9].update(account="C1"), "lines[9].account"),
    (lambda b: b["lines"][3].update(account="P1"), "lines[3].account"),
    (lambda b: b.update(type="receipt"), "type"),
    (lambda b: b.update(status="open"), "status"),
    (lambda b: b.update(type="statement"), "amount_due"),  # a statement has nothing due
    (lambda b: b.update(lines={}), "lines"),
])
def test_malformed_bill_refused_naming_the_key(mutate, field):
    bill = invoice()
    mutate(bill)
    with pytest.raises(BillFormatError) as e:
        bill_html(bill)
    assert e.value.field == field


def test_extra_keys_are_kept():
    bill = invoice()
    bill["paid"] = "0.00"
    assert json.loads(bill_json(bill))["paid"] == "0.00"


# ---------------------------------------------------------------------------------------------
# CSV


def test_summary_csv_exact_bytes_sorted_by_account():
    assert summary_csv([statement(), invoice()]) == (
        b"account,cycle,type,status,currency,subtotal,account_discount,tax,total,amount_due,lines\n"
        b"P1,2026-11,invoice,final,EUR,54.00,-3.24,9.64,60.40,60.40,10\n"
        b"S1,2026-11,statement,draft,EUR,12.99,0.00,2.47,15.46,0.00,3\n"
    )
    assert summary_csv([]) == (
        b"account,cycle,type,status,currency,subtotal,account_discount,tax,total,amount_due,lines\n"
    )


def test_summary_csv_cycles_of_one_account_and_refusals():
    october = invoice()
    october["cycle"] = "2026-10"
    out = summary_csv([invoice(), october]).decode().splitlines()
    assert [row.split(",")[1] for row in out[1:]] == ["2026-10", "2026-11"]
    with pytest.raises(BillFormatError) as e:
        summary_csv([invoice(), invoice()])
    assert e.value.field == "bills[1]"
    bad = statement()
    del bad["tax"]
    with pytest.raises(BillFormatError) as e:
        summary_csv([invoice(), bad])
    assert e.value.field == "bills[1].tax"


# ---------------------------------------------------------------------------------------------
# the export folder


@pytest.mark.parametrize("account, stem", [
    ("A1", "A1"),
    ("a..b", "a..b"),
    ("acme.corp_01-x", "acme.corp_01-x"),
    ("../etc/passwd", "%2E.%2Fetc%2Fpasswd"),
    (".", "%2E"),
    ("..", "%2E."),
    (".hidden", "%2Ehidden"),
    ("a/b", "a%2Fb"),
    ("a%2Fb", "a%252Fb"),
    ("a\\b", "a%5Cb"),
    ("a b\x00", "a%20b%00"),
    ("Zürich", "Z%C3%BCrich"),
    ("CON", "%43ON"),
    ("nul.x", "%6Eul.x"),
    ("COM1", "%43OM1"),
    ("CONSOLE", "CONSOLE"),
])
def test_export_stem_is_a_safe_one_to_one_name(account, stem):
    assert export_stem(account) == stem
    assert unquote(stem) == account  # one to one: decoding gives the account back
    assert not stem.startswith(".") and "/" not in stem and "\\" not in stem
    assert set(stem) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%")


def test_export_stem_refuses_empty_and_overlong():
    with pytest.raises(BillFormatError, match="^account: "):
        export_stem("")
    assert export_stem("x" * 200) == "x" * 200
    with pytest.raises(BillFormatError, match="too long"):
        export_stem("/" * 67)  # 201 bytes encoded


def bill_of(account: str) -> dict:
    bill = statement()
    bill["account"] = account
    return bill


def test_write_export_files_inside_the_folder_whole_and_identical(tmp_path):
    accounts = ["P1", "../escape", "a/b", ".hidden", "S1"]
    bills = [invoice()] + [bill_of(a) for a in accounts[1:]]
    out = tmp_path / "run" / "2026-11"
    paths = write_export(bills, out, operator="Telco")
    stems = ["%2E.%2Fescape", "%2Ehidden", "P1", "S1", "a%2Fb"]  # by account: . < P < S < a
    assert [p.name for p in paths] == [f"{s}.{ext}" for s in stems for ext in ("json", "html")] + [
        "summary.csv"]
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)  # no temporary left
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing escaped the folder
    assert (out / "P1.json").read_bytes() == bill_json(invoice())
    html = (out / "P1.html").read_text(encoding="utf-8")
    assert html == bill_html(invoice(), operator="Telco")
    assert parse((out / "%2E.%2Fescape.html").read_text()).one("td", "account").text == "../escape"
    assert (out / "summary.csv").read_bytes() == summary_csv(bills)
    # a second run into another folder gives the same bytes, file by file
    again = write_export(list(reversed(bills)), tmp_path / "again", operator="Telco")
    assert [p.name for p in again] == [p.name for p in paths]
    for first, second in zip(paths, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_write_export_replaces_old_files_and_writes_nothing_for_a_bad_bill(tmp_path):
    (tmp_path / "P1.json").write_text("old, half written")
    write_export([invoice()], tmp_path)
    assert (tmp_path / "P1.json").read_bytes() == bill_json(invoice())
    bad = bill_of("S1")
    bad["lines"][0]["amount"] = 3.0
    empty = tmp_path / "empty"
    with pytest.raises(BillFormatError) as e:
        write_export([invoice(), bad], empty)
    assert e.value.field == "bills[1].lines[0].amount"
    assert not empty.exists()


def test_write_export_failure_leaves_no_temporary(tmp_path):
    """The rename onto a name that is a folder fails: the earlier files are whole, no .tmp."""
    (tmp_path / "S1.html").mkdir()
    with pytest.raises(OSError):
        write_export([invoice(), bill_of("S1")], tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["P1.html", "P1.json", "S1.html", "S1.json"]
    assert (tmp_path / "S1.json").read_bytes() == bill_json(bill_of("S1"))


def test_write_export_one_bill_per_account(tmp_path):
    october = invoice()
    october["cycle"] = "2026-10"
    with pytest.raises(BillFormatError, match="two bills of account 'P1'"):
        write_export([invoice(), october], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_accounts_differing_in_case(tmp_path, monkeypatch):
    """On this (case-sensitive) file system both are written; where the file system folds
    case the export is refused before any file is written."""
    assert render._case_insensitive(tmp_path) is False
    assert os.listdir(tmp_path) == []  # the probe is gone
    paths = write_export([bill_of("ab1"), bill_of("AB1")], tmp_path / "cs")
    assert [p.name for p in paths] == ["AB1.json", "AB1.html", "ab1.json", "ab1.html",
                                       "summary.csv"]
    monkeypatch.setattr(render, "_case_insensitive", lambda directory: True)
    with pytest.raises(BillFormatError, match="differ only in letter case"):
        write_export([bill_of("ab1"), bill_of("AB1")], tmp_path / "ci")
    assert os.listdir(tmp_path / "ci") == []


def test_write_export_accepts_a_str_folder(tmp_path):
    paths = write_export([statement()], str(tmp_path / "s"))
    assert all(isinstance(p, Path) for p in paths) and paths[-1].name == "summary.csv"
