"""Assertion (negation / uncertainty) and laterality: the safety engine vs medspaCy ConText.

Both systems are scored on the same target spans, the hand-labelled mentions of
``tests/data/assertion/labelled.jsonl`` (see its README.md):

* **engine**: ``inference.safety.find_mentions`` on the whole report; the polarity of its
  mention at the labelled span (``unasserted`` counts as ``absent``: not a positive finding);
* **medspaCy**: ``medspacy.load()`` (PyRuSH sentences + ConText with its default English
  rules); the targets are set as ``doc.ents`` (every lexicon mention of the report, plus the
  labelled spans the lexicon has no concept for), then ConText runs.  ``is_negated`` or
  ``is_hypothetical`` -> absent, else ``is_uncertain`` -> uncertain, else present; the
  ``hist->absent`` row also reads ``is_historical`` as absent, and ``ConText+radiology``
  adds :data:`RADIOLOGY_RULES` (the engine's radiology phrases) to the default rules.

Prints accuracy, macro-F1 and per-class precision / recall / F1, side accuracy (engine
only: ConText has no laterality) and the rows each system gets wrong (``--errors``).  The
scores are deterministic; the timings (ms per report over the 341 validate reports, one
core) are not and can be left out with ``--no-timing``.  Usage::

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/bench_assertion.py [--errors] [--no-timing]

medspaCy is not a project dependency (see docs/safety-checks.md); install it to run this:
``pip install "spacy>=3.8,<3.9" PyRuSH loguru six unidecode medspacy_unqlite pysimstring``
then ``pip install --no-deps medspacy==1.3.1 medspacy_quickumls==3.2`` (medspacy 1.3.1 pins
spacy<3.8, which would downgrade numpy below 2; it runs on spacy 3.8).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.safety import LEXICON, Mention, find_mentions

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "assertion" / "labelled.jsonl"
VALIDATE = ROOT.parent / "shared" / "data" / "openi" / "validate.jsonl"
CLASSES = ("present", "uncertain", "absent")
_LATERAL = {c.name for c in LEXICON if c.lateral}
_POLARITY = {"present": "present", "uncertain": "uncertain", "absent": "absent"}


def load_sample(path: Path = SAMPLE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def engine_mention(row: dict[str, Any], mentions: Sequence[Mention]) -> Mention | None:
    for m in mentions:
        if m.start == row["start"] and m.start + len(m.text) == row["end"]:
            return m
    return None


def engine_predict(rows: Sequence[dict[str, Any]]) -> list[tuple[str, frozenset[str] | None]]:
    """(assertion, sides) per row; ``missed`` when the lexicon has no mention there."""
    out: list[tuple[str, frozenset[str] | None]] = []
    cache: dict[str, list[Mention]] = {}
    for row in rows:
        mentions = cache.setdefault(row["text"], find_mentions(row["text"]))
        m = engine_mention(row, mentions)
        if m is None:
            out.append(("missed", None))
        else:
            out.append((_POLARITY.get(m.polarity, "absent"), frozenset(m.sides)))
    return out


# --- medspaCy ------------------------------------------------------------------------------


# Radiology phrases the default ConText rules lack, taken from the safety engine's trigger
# list (inference/safety.py), so this variant asks: with the same vocabulary, does ConText's
# scope handling do better?  Chosen after seeing the default rules' errors on this sample,
# so it is an upper bound for ConText, not a blind score.
RADIOLOGY_RULES: tuple[tuple[str, str, str], ...] = (
    ("cannot exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot be excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("cannot be ruled out", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("not excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("questionable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("question", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("probable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("possibly", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspicious for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggestive of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggest", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggests", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggesting", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may represent", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("concerning for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("borderline", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("upper limits of normal", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("versus", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("or", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("not identified", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not seen", "NEGATED_EXISTENCE", "BACKWARD"),
    ("no longer seen", "NEGATED_EXISTENCE", "BACKWARD"),
    ("has resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("have resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("resolution of", "NEGATED_EXISTENCE", "FORWARD"),
    ("clearing of", "NEGATED_EXISTENCE", "FORWARD"),
    ("no visible", "NEGATED_EXISTENCE", "FORWARD"),
    ("no significant change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no interval change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("but", "NEGATED_EXISTENCE", "TERMINATE"),
    ("however", "NEGATED_EXISTENCE", "TERMINATE"),
)


def load_medspacy(radiology_rules: bool = False) -> Any:
    try:
        from loguru import logger

        logger.remove()  # medspaCy and PyRuSH log at DEBUG through loguru
        import medspacy  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        sys.exit(f"error: medspaCy is not installed ({exc}); see this script's docstring")
    nlp = medspacy.load()
    if radiology_rules:
        from medspacy.context import ConTextRule  # type: ignore[import-untyped, unused-ignore]

        rules = [ConTextRule(lit, cat, direction=d) for lit, cat, d in RADIOLOGY_RULES]
        nlp.get_pipe("medspacy_context").add(rules)
    return nlp


def _targets(text: str, extra: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    spans = list(dict.fromkeys(extra))
    for m in find_mentions(text):
        spans.append((m.start, m.start + len(m.text)))
    return spans


def medspacy_doc(nlp: Any, text: str, spans: Sequence[tuple[int, int]]) -> Any:
    """Tokenise, split sentences, set ``spans`` as the entities, run ConText."""
    from spacy.util import filter_spans

    doc = nlp.make_doc(text)
    doc = nlp.get_pipe("medspacy_pyrush")(doc)
    ents = []
    for start, end in spans:
        span = doc.char_span(start, end, label="FINDING", alignment_mode="expand")
        if span is not None:
            ents.append(span)
    doc.ents = filter_spans(ents)
    return nlp.get_pipe("medspacy_context")(doc)


def medspacy_predict(
    nlp: Any, rows: Sequence[dict[str, Any]], historical_absent: bool
) -> list[tuple[str, frozenset[str] | None]]:
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append(row)
    found: dict[str, str] = {}
    for text, group in by_text.items():
        extra = [(r["start"], r["end"]) for r in group if not r["in_lexicon"]]
        doc = medspacy_doc(nlp, text, _targets(text, extra))
        for row in group:
            label = "missed"
            for ent in doc.ents:
                if ent.start_char <= row["start"] < ent.end_char:
                    if (
                        ent._.is_negated
                        or ent._.is_hypothetical
                        or (historical_absent and ent._.is_historical)
                    ):
                        label = "absent"
                    elif ent._.is_uncertain:
                        label = "uncertain"
                    else:
                        label = "present"
                    break
            found[row["id"]] = label
    return [(found[row["id"]], None) for row in rows]


# --- scoring -------------------------------------------------------------------------------


def scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    result = {
        "n": float(len(gold)),
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)),
    }
    result["accuracy"] /= max(len(gold), 1)
    f1s = []
    for c in CLASSES:
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        fp = sum(g != c and p == c for g, p in zip(gold, pred, strict=True))
        fn = sum(g == c and p != c for g, p in zip(gold, pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[f"{c}_p"], result[f"{c}_r"], result[f"{c}_f1"] = precision, recall, f1
        f1s.append(f1)
    result["macro_f1"] = sum(f1s) / len(f1s)
    return result


def side_accuracy(
    rows: Sequence[dict[str, Any]], preds: Sequence[tuple[str, frozenset[str] | None]]
) -> tuple[int, int]:
    """Exact side-set matches on lexicon rows of lateral concepts (``None`` sides: no match)."""
    hits = total = 0
    for row, (_, sides) in zip(rows, preds, strict=True):
        if not row["in_lexicon"] or row["concept"] not in _LATERAL:
            continue
        total += 1
        hits += sides is not None and sides == frozenset(row["gold_sides"])
    return hits, total


def _table(title: str, rows: Sequence[dict[str, Any]], systems: dict[str, list[str]]) -> None:
    gold = [r["gold"] for r in rows]
    print(f"\n{title} (n={len(rows)}: " + ", ".join(f"{c} {gold.count(c)}" for c in CLASSES) + ")")
    head = f"{'system':<22} {'acc':>6} {'macroF1':>8}"
    for c in CLASSES:
        head += f" {c[:4] + ' P/R/F1':>18}"
    print(head)
    for name, pred in systems.items():
        s = scores(gold, pred)
        line = f"{name:<22} {s['accuracy']:>6.3f} {s['macro_f1']:>8.3f}"
        for c in CLASSES:
            line += f"  {s[c + '_p']:.2f}/{s[c + '_r']:.2f}/{s[c + '_f1']:.2f}".rjust(19)
        print(line)


def _errors(name: str, rows: Sequence[dict[str, Any]], pred: Sequence[str]) -> None:
    print(f"\nerrors: {name}")
    for row, p in zip(rows, pred, strict=True):
        if p != row["gold"]:
            t, s, e = row["text"], row["start"], row["end"]
            lo = max(t.rfind(". ", 0, s) + 2, s - 90, 0)
            hi = t.find(". ", e)
            hi = min(hi + 1 if hi >= 0 else len(t), e + 90)
            print(
                f"  {row['id']:<10} gold={row['gold']:<9} got={p:<9} | {t[lo:s]}[{t[s:e]}]{t[e:hi]}"
            )


# --- timing --------------------------------------------------------------------------------


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _ms_per_report(texts: Sequence[str], run: Callable[[str], object], rounds: int) -> float:
    for text in texts:
        run(text)
    per_round = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for text in texts:
                run(text)
            per_round.append((time.perf_counter() - start) * 1000 / len(texts))
        finally:
            gc.enable()
    return statistics.median(per_round)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--errors", action="store_true", help="list every wrong row")
    parser.add_argument(
        "--no-timing", action="store_true", help="skip the (non-deterministic) timing"
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rows = load_sample()
    nlp = load_medspacy()
    engine = engine_predict(rows)
    ctx = medspacy_predict(nlp, rows, historical_absent=False)
    ctx_hist = medspacy_predict(nlp, rows, historical_absent=True)
    ctx_radiology = medspacy_predict(load_medspacy(radiology_rules=True), rows, False)
    systems = {
        "safety engine": [p for p, _ in engine],
        "medspaCy ConText": [p for p, _ in ctx],
        "ConText hist->absent": [p for p, _ in ctx_hist],
        "ConText+radiology": [p for p, _ in ctx_radiology],
    }
    lexical = [i for i, r in enumerate(rows) if r["in_lexicon"]]

    def pick(idx: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        return [rows[i] for i in idx], {k: [v[i] for i in idx] for k, v in systems.items()}

    for title, idx in (
        ("all lexicon targets", lexical),
        ("  Open-i validate", [i for i in lexical if rows[i]["source"] == "openi-validate"]),
        ("  hand-written", [i for i in lexical if rows[i]["source"] == "handwritten"]),
        (
            "outside the lexicon (devices, widened mediastinum)",
            [i for i in range(len(rows)) if not rows[i]["in_lexicon"]],
        ),
    ):
        _table(title, *pick(idx))
    hits, total = side_accuracy(rows, engine)
    print(
        f"\nside accuracy (lateral concepts, exact side set): engine {hits}/{total}"
        f" = {hits / total:.3f}; medspaCy: n/a (ConText has no laterality)"
    )
    both_wrong = sum(
        systems["safety engine"][i] != rows[i]["gold"]
        and systems["medspaCy ConText"][i] != rows[i]["gold"]
        for i in lexical
    )
    print(f"lexicon rows both systems get wrong: {both_wrong}")
    if args.errors:
        lex_rows, lex_systems = pick(lexical)
        for name in ("safety engine", "medspaCy ConText", "ConText+radiology"):
            _errors(name, lex_rows, lex_systems[name])
        sides_wrong = [
            (r, s)
            for r, (_, s) in zip(rows, engine, strict=True)
            if r["in_lexicon"] and r["concept"] in _LATERAL and s != frozenset(r["gold_sides"])
        ]
        print("\nside errors: safety engine")
        for r, s in sides_wrong:
            got = sorted(s or ())
            print(f"  {r['id']:<10} gold={sorted(r['gold_sides'])} got={got} | {r['surface']}")
    if args.no_timing:
        return
    if not VALIDATE.exists():
        print(f"\ntiming skipped: {VALIDATE} not found")
        return
    _pin_one_core()
    texts = [
        json.loads(line)["inputs"] for line in VALIDATE.read_text(encoding="utf-8").splitlines()
    ]
    spans = {t: _targets(t, ()) for t in texts}
    engine_ms = _ms_per_report(texts, find_mentions, args.rounds)
    context_ms = _ms_per_report(texts, lambda t: medspacy_doc(nlp, t, spans[t]), args.rounds)
    print(f"\nspeed, {len(texts)} validate reports, one core, median of {args.rounds} rounds:")
    print(
        f"  safety engine find_mentions (lexicon + assertion + sides)  {engine_ms:7.3f} ms/report"
    )
    print(
        f"  medspaCy tokenise + PyRuSH + ConText on given spans       {context_ms:7.3f} ms/report"
    )
    total_ms = engine_ms + context_ms
    print(f"  medspaCy as an assertion layer over the lexicon (sum)      {total_ms:7.3f} ms/report")


if __name__ == "__main__":
    main()
