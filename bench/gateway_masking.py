"""The gateway's masking, in process: ``mask_document`` on a customer document and on a page of
50 customers, against ``json.loads`` + ``json.dumps`` of the same bytes.

Run: ``PYTHONPATH=src .venv/bin/python bench/gateway_masking.py [--quick]``. Prints one JSON
object per line on stdout (progress on stderr); nothing here asserts on time.

The fields are CONTRACT §7's read route (``$.ssn``, ``$.passport_number``, ``$.bank.account``,
``$.phone``, ``$.address``) plus ``$.contacts[*].phone``; on the page each is under
``$.customers[*]``. Every class is masked (the most work a response can take). The baseline,
timed in the same rounds, alternating, is what the gateway pays anyway for a JSON route it must
read: parsing the upstream's body and serialising the answer. ``response_*`` times the whole
path, ``loads`` + mask + ``dumps``, against that baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable

from _common import emit, note, summary
from piigate.gateway.http.masking import default_rule, mask_document
from piigate.gateway.http.selectors import FieldMap, compile_selector

BENCH = "gateway_masking"
FIELDS = {
    "$.ssn": "ssn",
    "$.passport_number": "passport",
    "$.bank.account": "bank_account",
    "$.phone": "phone",
    "$.address": "mailing_address",
    "$.contacts[*].phone": "phone",
}
CLASSES = frozenset(FIELDS.values())
RULES = {name: default_rule(name) for name in CLASSES}


def customer(n: int) -> dict[str, object]:
    return {
        "id": f"cus_{n:06d}",
        "name": f"Customer {n}",
        "email": f"customer{n}@example.com",
        "ssn": f"{100 + n % 800:03d}-{10 + n % 89:02d}-{n % 10000:04d}",
        "passport_number": f"X{n:08d}",
        "phone": f"+1 (555) {n % 1000:03d}-{n % 10000:04d}",
        "address": {"street": f"{n} Main St", "city": "Springfield", "zip": f"{n % 99999:05d}"},
        "bank": {"account": f"DE89370400440532{n:06d}", "bic": "COBADEFFXXX"},
        "contacts": [
            {"name": "Home", "phone": f"+1 555 {n % 1000:03d} {n % 10000:04d}"},
            {"name": "Work", "phone": f"+1 555 {(n + 1) % 1000:03d} 0000"},
        ],
        "created_at": "2026-05-04T10:00:00Z",
        "tags": ["retail", "newsletter"],
        "balance": {"amount": "1234.56", "currency": "EUR"},
    }


def time_calls(fn: Callable[[], object], calls: int) -> list[int]:
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return samples


def variants(doc: object, fields: FieldMap[str]) -> dict[str, Callable[[], object]]:
    raw = json.dumps(doc).encode()
    loads, dumps = json.loads, json.dumps
    parsed = loads(raw)
    return {
        "mask": lambda: mask_document(parsed, fields, CLASSES, RULES),
        "codec": lambda: dumps(loads(raw)),
        "response": lambda: dumps(mask_document(loads(raw), fields, CLASSES, RULES)[0]),
    }


def check(doc: dict[str, object], fields: FieldMap[str]) -> None:
    """The masked document hides what it must, and the input is left as it was."""
    before = json.dumps(doc)
    masked, present = mask_document(doc, fields, CLASSES, RULES)
    assert json.dumps(doc) == before, "mask_document changed its input"
    assert present == CLASSES, present
    assert isinstance(masked, dict)
    assert masked["ssn"] == "***-**-0042" and masked["passport_number"] == "*****0042"
    assert masked["address"] == "***" and masked["phone"] == "+* (***) ***-**42"
    assert masked["bank"] == {"account": "******************0042", "bic": "COBADEFFXXX"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~8 s run")
    args = parser.parse_args(argv)
    rounds, calls = (4, 5_000) if args.quick else (8, 20_000)
    started = time.monotonic()
    one = FieldMap((compile_selector(s), c) for s, c in FIELDS.items())
    many = FieldMap(
        (compile_selector(s.replace("$", "$.customers[*]", 1)), c) for s, c in FIELDS.items()
    )
    docs = {
        "customer": (customer(42), one),
        "page": ({"customers": [customer(i) for i in range(50)]}, many),
    }
    check(*docs["customer"])
    timed: dict[tuple[str, str], list[int]] = {}
    runs = {doc: variants(*pair) for doc, pair in docs.items()}
    counts = {"customer": calls, "page": calls // 40}  # a page costs ~50 customers
    for doc, fns in runs.items():  # warm-up
        for fn in fns.values():
            time_calls(fn, counts[doc] // 10)
    gc.collect()
    for r in range(rounds):  # alternate the variants, so drift in load hits them alike
        for doc, fns in runs.items():
            order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
            for name, fn in order:
                timed.setdefault((doc, name), []).extend(time_calls(fn, counts[doc]))
    note(f"{BENCH}: {rounds} rounds in {time.monotonic() - started:.1f} s")
    base_is = "json.loads + json.dumps of the same document (stdlib json), same run"
    for doc, (value, fields) in docs.items():
        size = len(json.dumps(value))
        codec = summary(timed[(doc, "codec")])
        for name in ("mask", "response"):
            got = summary(timed[(doc, name)])
            masked = len(fields.find(value))
            extra = {"samples": got["n"], "document_bytes": size, "fields_masked": masked}
            for stat in ("p50", "p99"):
                emit(
                    BENCH,
                    f"{name}_{doc}_{stat}_us",
                    got[stat],
                    "us",
                    codec[stat],
                    baseline_is=base_is,
                    **extra,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
