"""Another process's changes to sesame's table, as the kernel announces them: decoded
from bytes the kernel really sent, then judged row by row (see sesame.firewall.watch)."""

from __future__ import annotations

import pytest

from sesame.firewall.watch import Verdict, Watch
from sesame.logs import escape
from sesame.wire import nftables
from sesame.wire.nftables import NFPROTO_INET, Notice

NEWGEN = nftables.NFT_MSG_NEWGEN

# Captured from the NFNLGRP_NFTABLES group of Linux 6.18 while `nft add element inet t
# grants4 { 192.0.2.1 }` and then `nft delete table inet t` ran (processes 10595 and
# 10596): one datagram a message or several, each transaction ended by NEWGEN.
CAPTURED = [
    "3c0000000c0a000400000000632900000100000306000100740000000c0002006772616e7473340014"
    "000300100001000c00010008000100c0000201",
    "2c0000000f0a000001000000632900000000000308000100000000030800020000002963080003006e667400",
    "340000000b0a000001000000642900000100000406000100740000000c0002006772616e747334000c"
    "001000000000000000000234000000050a000001000000642900000100000406000100740000000a00"
    "0300696e7075740000000c000200000000000000000130000000020a00000100000064290000010000"
    "0406000100740000000800030000000000" + "0c0004000000000000000001",
    "2c0000000f0a000001000000642900000000000408000100000000040800020000002964080003006e667400",
]


def test_notifications_the_kernel_sent_are_decoded():
    found = [n for data in CAPTURED for n in nftables.notices(bytes.fromhex(data), "t")]
    assert found == [
        Notice(nftables.NFT_MSG_NEWSETELEM, NFPROTO_INET, "t", "grants4"),
        Notice(NEWGEN, pid=10595),
        Notice(11, NFPROTO_INET, "t", "grants4"),  # DELSET
        Notice(5, NFPROTO_INET, "t", ""),  # DELCHAIN
        Notice(2, NFPROTO_INET, "t", ""),  # DELTABLE
        Notice(NEWGEN, pid=10596),
    ]


@pytest.mark.parametrize("data", [b"", b"\x00" * 15, b"\xff" * 64, bytes.fromhex(CAPTURED[2])[:50]])
def test_truncated_or_junk_notifications_yield_what_is_whole(data):
    assert all(isinstance(n, Notice) for n in nftables.notices(data, "t"))


def test_other_tables_are_skipped():
    found = [n for data in CAPTURED for n in nftables.notices(bytes.fromhex(data), "tt")]
    assert found == [Notice(NEWGEN, pid=10595), Notice(NEWGEN, pid=10596)]


def gen(pid):
    return Notice(NEWGEN, pid=pid)


def change(kind, table="sesame", set_name="", family=NFPROTO_INET):
    return Notice(kind, family, table, set_name)


DELTABLE, DELCHAIN, NEWRULE, DELRULE, DELSET = 2, 5, 6, 8, 11
NEW, DEL = nftables.NFT_MSG_NEWSETELEM, nftables.NFT_MSG_DELSETELEM


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ([change(DELTABLE)], Verdict(restore=True, by=(7,))),
        ([change(DELCHAIN)], Verdict(restore=True, by=(7,))),
        ([change(DELRULE)], Verdict(restore=True, by=(7,))),
        ([change(NEWRULE)], Verdict(restore=True, by=(7,))),
        ([change(DELSET, set_name="noisy4")], Verdict(restore=True, by=(7,))),
        ([change(DEL, set_name="guarded")], Verdict(restore=True, by=(7,))),
        ([change(NEW, set_name="knock")], Verdict(restore=True, by=(7,))),
        ([change(DEL, set_name="grants4")], Verdict(revoke=True, by=(7,))),
        ([change(DEL, set_name="grants6"), change(DELRULE)], Verdict(True, True, by=(7,))),
        ([change(NEW, set_name="grants4")], Verdict()),
        ([change(DEL, set_name="noisy4"), change(NEW, set_name="hits6")], Verdict()),
        ([change(DEL, set_name="follow4")], Verdict()),
        ([change(DELTABLE, table="other")], Verdict()),
        ([change(DELTABLE, family=2)], Verdict()),  # ip sesame, not inet sesame
    ],
    ids=[
        "table",
        "chain",
        "rule-deleted",
        "rule-added",
        "set",
        "guarded-flushed",
        "knock-added",
        "grant-deleted",
        "both",
        "grant-added",
        "kernel-state",
        "follow",
        "other-table",
        "other-family",
    ],
)
def test_another_process_changes(changes, verdict):
    watch = Watch("sesame", own=1)
    assert watch.judge([*changes, gen(7)]) == verdict


def test_sesames_own_changes_are_ignored():
    watch = Watch("sesame", own=1)
    assert not watch.judge([change(DELTABLE), gen(1)])


def test_a_transaction_may_end_in_a_later_read():
    watch = Watch("sesame", own=1)
    assert not watch.judge([change(DELRULE)])
    assert watch.judge([gen(9)]) == Verdict(restore=True, by=(9,))


def test_lost_notifications_are_unknown():
    watch = Watch("sesame", own=1)
    watch.judge([change(DELRULE)])
    assert watch.lost() == Verdict(unknown=True)
    assert not watch.judge([gen(9)])  # what was pending is gone with the rest


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("2001:db8::9%\nforged line", "2001:db8::9%\\x0aforged line"),
        ("a\rb\x1b[31mc\x7f", "a\\x0db\\x1b[31mc\\x7f"),
        ("line\u2028sep", "line\\u2028sep"),
        ("plain, ünïcode", "plain, ünïcode"),
    ],
)
def test_log_messages_are_escaped(text, logged):
    assert escape(text) == logged


def test_a_formatted_record_is_one_line():
    import logging

    from sesame.logs import FORMAT, Escaping

    record = logging.LogRecord("sesame", logging.INFO, "x", 1, "from %s", ("a\nb",), None)
    assert "\n" not in Escaping(FORMAT).format(record)
