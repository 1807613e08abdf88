"""`ccs demo` (what `make demo` runs, issue 14 item 3) in its reduced size: an operator's day
on its own redis-server and SQLite, leaving demo-output/ (page, charts, bills) and nothing
running, also when it is interrupted."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

CCS = str(Path(sys.executable).with_name("ccs"))
PNG = b"\x89PNG\r\n\x1a\n"
CHARTS = ("latency.png", "throughput.png", "result_codes.png", "revenue.png",
          "prepaid_balances.png")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _env() -> dict:
    env = dict(os.environ)
    env.pop("CCS_REDIS_URL", None)
    return env


def _demo(*args) -> subprocess.Popen:
    return subprocess.Popen([CCS, "demo", *map(str, args)], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])


def _started(out: str) -> tuple[int, Path]:
    """The redis-server's pid and the temporary folder the demo said it uses."""
    m = re.search(r"redis-server \S+ \(pid (\d+)\) .*bills in SQLite (\S+)/ccs\.db", out)
    assert m, out
    return int(m.group(1)), Path(m.group(2))


def test_the_small_demo_leaves_its_page_charts_and_bills_and_nothing_running(tmp_path):
    out_dir = tmp_path / "demo-output"
    demo = _demo("--small", "--out", out_dir)
    out, err = demo.communicate(timeout=600)
    assert demo.returncode == 0, err
    lines = out.splitlines()
    expected = [
        "150 accounts, 10 minutes of",
        "health SERVING",
        # EU voice 0.15 a minute in 30 s steps: 60 s = 0.15; an SMS to an EU number takes the
        # entry for any destination (WORLD only holds numbers no other prefix claims): 0.09;
        # data 0.01 a MiB (the first tier): 10 MiB = 0.10
        "(EVENT PRICE_ENQUIRY): 60 s to 33612345678 0.1500, 1 SMS to 33612345678 0.0900, "
        "10 MiB of data 0.1000",
        # the story account has 1.00: EU calls cost 0.15 a minute in 30 s steps (0.075 each),
        # so the money covers 13 steps = 390 s, and the grant is final
        "asking for 600 s: result 2001, granted 390 s, FINAL",
        # 1.00 + 20.00 + the 2.00 gift of smart_m for a top-up >= 20.00, less the 0.975 the
        # call holds for its 390 s
        "tops up 20.00 (Accounts.TopUp) while talking: balance 21.00, available 22.025",
        'notification REAUTHORIZE ',
        '{"sessions": ["demo-reauth-1"]}',
        "UPDATE reporting 120 s used: result 2001, granted 600 s, not final",
        # 120 s = 4 steps = 0.30; then 300 s = 10 steps = 0.75; 23.00 - 1.05 = 21.95
        "TERMINATE after 420 s: charged 0.0000 + 0.3000 + 0.7500, available 21.9500",
        "bill run ",
        "rejected 6 (malformed 6)",  # the roaming file holds 6 malformed rows on purpose
        "arrears run as of ",
        "ledger audit of 150 accounts (Redis from the archive's checkpoints, the archive in "
        "the database): clean",
        "node and redis-server stopped",
        f"open {(out_dir / 'index.html').resolve()}",
    ]
    for text in expected:
        assert any(text in line for line in lines), f"missing {text!r} in:\n{out}"
    # the node's own /metrics counted what the replay and the story sent
    m = re.search(r"/metrics counted (\d+) answered Charge requests \(the replay's (\d+) "
                  r"and the story's (\d+)\)", out)
    assert m and int(m.group(1)) == int(m.group(2)) + int(m.group(3)) > 0, out

    index = out_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "Audit: " in page and "clean" in page.split("Audit: ", 1)[1]
    links = _Links()
    links.feed(page)
    for name in CHARTS:
        assert name in links.images, name
        assert (out_dir / name).read_bytes()[:8] == PNG, name
    for ref in links.hrefs + links.images:  # every link is relative and its file exists
        assert "://" not in ref and not ref.startswith("/"), ref
        assert (out_dir / ref).is_file(), ref
    linked = {Path(h).stem for h in links.hrefs if h.startswith("bills/") and h.endswith(".html")}
    with (out_dir / "bills" / "summary.csv").open() as f:
        billed = {row["account"] for row in csv.DictReader(f)}
    with (out_dir / "accounts.csv").open() as f:
        owners = {row["account"] for row in csv.DictReader(f) if not row["parent"]}
    # a bill for every account that is not a child (children are sections of their
    # parent's bill), each linked from the page
    assert billed == owners and linked == billed, (len(billed), len(owners), len(linked))
    for account in linked:
        html = (out_dir / "bills" / f"{account}.html").read_text(encoding="utf-8")
        assert account in html

    # nothing left running, nothing left in the temporary folder
    redis_pid, work = _started(out)
    assert not _alive(redis_pid)
    assert not work.exists()


def test_an_interrupted_demo_stops_what_it_started(tmp_path):
    demo = _demo("--small", "--seconds", "600", "--out", tmp_path / "out")
    seen = []
    for line in demo.stdout:  # wait until the node is charging, then Ctrl-C
        seen.append(line)
        if "4/7 the node on" in line:
            break
    demo.send_signal(signal.SIGINT)
    rest, err = demo.communicate(timeout=120)
    out = "".join(seen) + rest
    assert demo.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == \
        "[demo] interrupted: everything the demo started is stopped"
    assert "Traceback" not in err
    redis_pid, work = _started(out)
    assert not _alive(redis_pid)
    assert not work.exists()


def test_bad_sizes_are_one_line_and_exit_2(tmp_path):
    got = subprocess.run([CCS, "demo", "--accounts", "5", "--out", tmp_path / "o"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert got.returncode == 2
    assert got.stderr == "ccs demo: --accounts: expected 10..200000, got 5\n"
    assert not (tmp_path / "o").exists()
