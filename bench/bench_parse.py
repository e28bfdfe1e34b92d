"""Parse throughput: our HL7 v2 reader vs hl7apy's full parse, and the FHIR R4 reader.

Runs the test corpus (tests/data/hl7, tests/data/fhir) many times on one CPU core and prints
messages per second, milliseconds per message, and the speed-up over hl7apy measured in the
same run.  Usage::

    nice -n 10 .venv/bin/python bench/bench_parse.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from hl7apy.parser import parse_message as hl7apy_parse

from integration.codecs.fhir.reader import parse_fhir
from integration.codecs.hl7.reader import decode_message, parse_oru

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity)"


def _corpus(folder: str) -> list[bytes]:
    expected = json.loads((DATA / folder / "expected.json").read_text(encoding="utf-8"))
    return [(DATA / folder / name).read_bytes() for name, reports in expected.items() if reports]


def _time(label: str, items: list[object], parse: Callable[[object], object], rounds: int) -> float:
    for item in items:  # warm-up (imports, caches)
        parse(item)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(rounds):
            for item in items:
                parse(item)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    count = rounds * len(items)
    rate = count / elapsed
    print(f"{label:<44} {count:>6} msgs  {rate:>9.0f} msg/s  {1000 / rate:>8.3f} ms/msg")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(_pin_one_core())

    hl7 = _corpus("hl7")
    # hl7apy needs decoded text with CR separators and no MLLP framing; give it that for free.
    hl7_text: list[object] = [
        decode_message(raw)[0].replace("\r\n", "\r").replace("\n", "\r") for raw in hl7
    ]
    fhir = _corpus("fhir")

    ours = _time("HL7 v2 radgpt parse_oru (bytes -> reports)", list(hl7), parse_oru, args.rounds)
    baseline = _time(
        "HL7 v2 hl7apy parse_message (text -> tree)",
        hl7_text,
        lambda text: hl7apy_parse(text, find_groups=True),
        max(1, args.rounds // 5),
    )
    fhir_rate = _time(
        "FHIR R4 radgpt parse_fhir (bytes -> reports)", list(fhir), parse_fhir, args.rounds
    )
    print(f"HL7 v2 speed-up over hl7apy full parse: {ours / baseline:.1f}x")
    print(f"FHIR R4 vs HL7 v2 reader: {fhir_rate / ours:.2f}x")


if __name__ == "__main__":
    main()
