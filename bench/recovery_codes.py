"""What one recovery-code attempt costs the node: a set stored with its codes' tags against the
same set without them (how every set was checked before the tags), same run.

Run: ``.venv/bin/python bench/recovery_codes.py [--quick]``. Prints one JSON object per line on
stdout (progress on stderr). See docs/BENCHMARKS.md; nothing here asserts on time.

What runs: ten codes and their argon2id hashes (``factors/recovery/protocol.py``, the
parameters of ``identity/passwords.py``), then, in rounds that alternate the order, attempts of
``match_recovery_code`` on the tagged set and on the untagged one: a right code (the 6th) and a
wrong one (a code of another set, whose tag none of these shares). CPU time of this process per
attempt (``time.process_time``), the median over the attempts of a kind.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import emit, note
from piigate.crypto.secret import Secret
from piigate.factors.recovery.protocol import (
    generate_recovery_codes,
    hash_recovery_code,
    match_recovery_code,
    recovery_code_tag,
)

BENCH = "recovery_codes"


def attempt_cpu(
    code: Secret[str], hashes: list[str | None], tags: list[str | None] | None
) -> float:
    started = time.process_time()
    match_recovery_code(code, hashes, tags)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer attempts")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else 5
    codes = generate_recovery_codes(10)
    hashes: list[str | None] = [hash_recovery_code(c) for c in codes]
    tags: list[str | None] = [recovery_code_tag(c) for c in codes]
    right = codes[5]
    wrong = next(c for c in generate_recovery_codes(50) if recovery_code_tag(c) not in tags)
    samples: dict[tuple[str, bool], list[float]] = {}
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for tagged in order:
            for kind, code in (("right", right), ("wrong", wrong)):
                cpu = attempt_cpu(code, hashes, tags if tagged else None)
                samples.setdefault((kind, tagged), []).append(cpu)
        note(f"{BENCH}: round {r + 1}/{rounds}")
    for kind in ("right", "wrong"):
        value = statistics.median(samples[(kind, True)]) * 1000
        baseline = statistics.median(samples[(kind, False)]) * 1000
        emit(
            BENCH,
            f"{kind}_code_attempt_cpu_ms",
            value,
            "ms",
            baseline,
            baseline_is="the same attempt on the same ten codes stored without tags (every hash "
            "verified), same run",
            attempts=rounds,
            codes=len(codes),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
