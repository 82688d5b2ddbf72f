"""The JSON codecs half of bench/upstream_clients.py: parse, serialise, and both, in process.

Two documents: a customer record of ~1 KB and a page of 100 of them (~100 KB), each record with
a decimal amount beyond a double's precision. The codecs:

- ``stdlib_decimal``: ``json.JSONDecoder(parse_float=Decimal)``, built once: what the gateway
  must use for request bodies (an amount read as a float rounds: ``10000.000000000000001`` is
  not over 10 000). The baseline for parsing. stdlib ``json`` cannot write a ``Decimal`` back as
  a number, so it has no exact round trip of its own;
- ``stdlib``: ``json.loads`` / a compact ``json.JSONEncoder`` on floats: the baseline for
  serialising and the round trip (bench/gateway_masking.py's baseline);
- ``stdlib_exact``: ``stdlib_decimal`` that also reads an integer of 19 digits or more as a
  ``Decimal`` (``parse_int``), for orjson to write;
- ``orjson`` (floats; it reads an integer beyond 64 bits as a float), and ``orjson_decimal``:
  orjson writing the ``stdlib_exact`` document, a ``Decimal`` as its own text through
  ``orjson.Fragment`` (exact; orjson refuses to write an ``int`` beyond 64 bits, hence
  ``stdlib_exact``);
- ``pydantic_core``: ``from_json`` / ``to_json`` (floats; it writes a ``Decimal`` as a string,
  so it has no exact serialisation either);
- ``simplejson_decimal``: simplejson with ``parse_float=Decimal`` / ``use_decimal=True``, when
  installed (exact both ways).

Each line's ``numbers`` says what the codec did to a probe document holding that amount and an
integer beyond 64 bits: ``exact``, the numbers it changed, or ``fails: ...``. Optional codecs
that are not installed are left out, with a note.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic_core

from _common import emit, note, summary
from gateway_masking import time_calls

BENCH = "upstream_clients"
Codec = Callable[[Any], Any]
PROBE_AMOUNT = "12345678901234567.89"  # 19 significant digits: a double keeps 15-17
PROBE_REF = "98765432109876543210"  # above 2**64
PROBE = b'{"amount":%s,"ref":%s}' % (PROBE_AMOUNT.encode(), PROBE_REF.encode())

try:
    import orjson
except ImportError:  # pragma: no cover - measured without it
    orjson = None  # type: ignore[assignment]
try:
    import simplejson
except ImportError:  # pragma: no cover - measured without it
    simplejson = None  # type: ignore[assignment]


def _wide_int(text: str) -> int | Decimal:
    """An integer as ``int``, or as a ``Decimal`` from 19 digits on (past 64 bits, orjson fails)."""
    return int(text) if len(text) < 19 else Decimal(text)


def _fragment(value: object) -> object:
    """orjson's ``default``: a ``Decimal`` as its own text (orjson has no ``Decimal`` type)."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(type(value).__name__)


@dataclass(frozen=True)
class Variant:
    """One timed call: ``run(prepare(raw))``, only ``run`` timed."""

    op: str  # parse, dumps or roundtrip
    name: str
    prepare: Callable[[bytes], Any]
    run: Callable[[Any], object]


def variants() -> list[Variant]:
    """Parsers, serialisers (each on the document its own parser makes), and round trips."""
    decimal = json.JSONDecoder(parse_float=Decimal)
    exact = json.JSONDecoder(parse_float=Decimal, parse_int=_wide_int)
    compact = json.JSONEncoder(separators=(",", ":"))
    parsers: dict[str, Codec] = {
        "stdlib_decimal": lambda raw: decimal.decode(raw.decode()),
        "stdlib_exact": lambda raw: exact.decode(raw.decode()),
        "stdlib": json.loads,
        "pydantic_core": pydantic_core.from_json,
    }
    writers: dict[str, tuple[str, Codec]] = {
        "stdlib": ("stdlib", lambda doc: compact.encode(doc).encode()),
        "pydantic_core": ("pydantic_core", pydantic_core.to_json),
    }
    trips = {"stdlib": ("stdlib", "stdlib"), "pydantic_core": ("pydantic_core", "pydantic_core")}
    if orjson is not None:
        parsers["orjson"] = orjson.loads
        writers["orjson"] = ("orjson", orjson.dumps)
        writers["orjson_decimal"] = ("stdlib_exact", lambda d: orjson.dumps(d, default=_fragment))
        trips["orjson"] = ("orjson", "orjson")
        trips["stdlib_exact+orjson"] = ("stdlib_exact", "orjson_decimal")
    else:
        note(f"{BENCH}: orjson is not installed, measured without it")
    if simplejson is not None:
        s_dec = simplejson.JSONDecoder(parse_float=Decimal)
        s_enc = simplejson.JSONEncoder(use_decimal=True, separators=(",", ":"))
        parsers["simplejson_decimal"] = lambda raw: s_dec.decode(raw.decode())
        writers["simplejson_decimal"] = ("simplejson_decimal", lambda d: s_enc.encode(d).encode())
        trips["simplejson_decimal"] = ("simplejson_decimal", "simplejson_decimal")
    out = [Variant("parse", name, _same, parse) for name, parse in parsers.items()]
    out += [Variant("dumps", n, parsers[src], write) for n, (src, write) in writers.items()]
    for name, (parse_name, write_name) in trips.items():
        parse, write = parsers[parse_name], writers[write_name][1]
        out.append(Variant("roundtrip", name, _same, lambda raw, p=parse, w=write: w(p(raw))))
    return out


def _same(raw: bytes) -> bytes:
    return raw


def fidelity(variant: Variant) -> str:
    """What ``variant`` does to a decimal amount beyond a double and an integer beyond 64 bits."""
    try:
        out = variant.run(variant.prepare(PROBE))
    except (TypeError, ValueError) as exc:  # orjson's errors are both
        return f"fails: {exc}"
    doc = out if variant.op == "parse" else json.loads(bytes(out), parse_float=Decimal)  # type: ignore[arg-type]
    changed = []
    if str(doc["amount"]) != PROBE_AMOUNT:
        changed.append(f"{PROBE_AMOUNT} -> {doc['amount']}")
    if str(doc["ref"]) != PROBE_REF:
        changed.append(f"{PROBE_REF} -> {doc['ref']}")
    return "; ".join(changed) or "exact"


def run_codecs(docs: dict[str, bytes], *, quick: bool) -> None:
    """Time every variant on each document (rounds alternate them) and print the lines."""
    rounds = 2 if quick else 4
    for size, raw in docs.items():
        calls = (500 if quick else 2_000) if len(raw) < 10_000 else (10 if quick else 100)
        timed: dict[tuple[str, str], list[int]] = {}
        pending = [(v, v.prepare(raw)) for v in variants()]
        for v, arg in pending:  # warm-up
            time_calls(lambda v=v, a=arg: v.run(a), max(calls // 10, 2))
        gc.collect()
        for r in range(rounds):
            for v, arg in pending if r % 2 == 0 else pending[::-1]:
                samples = time_calls(lambda v=v, a=arg: v.run(a), calls)
                timed.setdefault((v.op, v.name), []).extend(samples)
        _report(size, len(raw), {(v.op, v.name): fidelity(v) for v, _ in pending}, timed)


BASES = {"parse": "stdlib_decimal", "dumps": "stdlib", "roundtrip": "stdlib"}
BASES_ARE = {
    "parse": "stdlib json.JSONDecoder(parse_float=Decimal), same run",
    "dumps": "stdlib compact json.JSONEncoder on json.loads's (float) document, same run",
    "roundtrip": "stdlib json.loads + compact json.JSONEncoder (floats), same run",
}


def _report(
    size: str,
    nbytes: int,
    kept: dict[tuple[str, str], str],
    timed: dict[tuple[str, str], list[int]],
) -> None:
    for op, name in timed:
        base_name = BASES[op]
        if name == base_name:
            continue
        got, base = summary(timed[(op, name)]), summary(timed[(op, base_name)])
        emit(
            BENCH,
            f"json_{op}_{size}_{name}_p50_us",
            got["p50"],
            "us",
            base["p50"],
            baseline_is=BASES_ARE[op],
            p99_us=round(got["p99"], 1),
            baseline_p99_us=round(base["p99"], 1),
            numbers=kept[(op, name)],
            baseline_numbers=kept[(op, base_name)],
            document_bytes=nbytes,
            samples=got["n"],
        )
