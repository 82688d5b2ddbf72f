"""The PostgreSQL protocol layer in process: parsing (and parsing + re-encoding) a 10,000-row
result stream with ``BackendParser``, against a plain copy of the same bytes.

Run: ``PYTHONPATH=src .venv/bin/python bench/pg_protocol.py [--quick]``. Prints one JSON object
per line on stdout (progress on stderr); nothing here asserts on time.

The stream is what the server sends for ``SELECT id, name, ssn, phone, note FROM customers``
over 10,000 rows in the text format (RowDescription, 10,000 DataRows with one NULL column in
ten, CommandComplete, ReadyForQuery), generated deterministically, fed in 64 KiB chunks as a
socket would deliver it. The baseline, timed in the same rounds, alternating, is joining the
same chunks into one ``bytes``: the least a relay that touches the data at all pays.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable

from _common import emit, note, summary
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.protocol import BackendParser

BENCH = "pg_protocol"
ROWS = 10_000
CHUNK = 65_536


def stream() -> bytes:
    columns = ("id", "name", "ssn", "phone", "note")
    fields = tuple(
        be.FieldDescription(name, 16_384, i + 1, 25 if i else 23, -1 if i else 4)
        for i, name in enumerate(columns)
    )
    parts = [be.RowDescription(fields).encode()]
    for n in range(ROWS):
        values: tuple[bytes | None, ...] = (
            str(n).encode(),
            f"Customer {n}".encode(),
            f"{100 + n % 800:03d}-{10 + n % 89:02d}-{n % 10000:04d}".encode(),
            f"+1 555 {n % 1000:03d} {n % 10000:04d}".encode(),
            None if n % 10 == 0 else b"regular customer since 2019",
        )
        parts.append(be.DataRow(values).encode())
    parts += [be.CommandComplete(f"SELECT {ROWS}").encode(), be.ReadyForQuery("I").encode()]
    return b"".join(parts)


def time_calls(fn: Callable[[], object], calls: int) -> list[int]:
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return samples


def variants(chunks: list[bytes]) -> dict[str, Callable[[], object]]:
    def parse() -> object:
        parser = BackendParser()
        return [m for chunk in chunks for m in parser.feed(chunk)]

    def relay() -> object:
        parser = BackendParser()
        return b"".join(m.encode() for chunk in chunks for m in parser.feed(chunk))

    return {"parse": parse, "relay": relay, "copy": lambda: b"".join(chunks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~5 s run")
    args = parser.parse_args(argv)
    rounds, calls = (2, 3) if args.quick else (6, 5)
    data = stream()
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    fns = variants(chunks)
    assert fns["relay"]() == data, "re-encoding changed the stream"
    started = time.monotonic()
    timed: dict[str, list[int]] = {name: [] for name in fns}
    gc.collect()
    for r in range(rounds):  # alternate the variants, so drift in load hits them alike
        order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
        for name, fn in order:
            timed[name].extend(time_calls(fn, calls))
    note(f"{BENCH}: {rounds} rounds in {time.monotonic() - started:.1f} s")
    copy = summary(timed["copy"])
    base_is = "b''.join of the same 64 KiB chunks (a plain copy of the bytes), same run"
    for name in ("parse", "relay"):
        got = summary(timed[name])
        extra = {"samples": got["n"], "rows": ROWS, "stream_bytes": len(data)}
        emit(BENCH, f"{name}_per_row_us", got["p50"] / ROWS, "us", copy["p50"] / ROWS,
             baseline_is=base_is, **extra)  # fmt: skip
        emit(BENCH, f"{name}_stream_p50_ms", got["p50"] / 1000, "ms", copy["p50"] / 1000,
             baseline_is=base_is, **extra)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
