"""Draw the candidate mentions of ``labelled.jsonl`` from the Open-i validate findings.

The candidates are the safety lexicon's mentions (``inference.safety.find_mentions``), so
every assertion system is scored on the same targets, plus device mentions the lexicon has
no concept for (``in_lexicon: false``).  Strata use only surface cues of the sentence, never
either system's output, and a fixed seed; the gold labels were then added by hand (see
README.md).  Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tests/data/assertion/draw_sample.py \
        /work/shared/data/openi/validate.jsonl > /tmp/candidates.jsonl
"""

from __future__ import annotations

import json
import random
import re
import sys

from inference.safety import find_mentions, split_sentences

SEED = 11
# Stratum -> quota; a mention goes to the first stratum it fits that still has room.
QUOTAS = {"hedge": 70, "side": 70, "multi": 60, "plain": 70, "neg": 50}
DEVICE_QUOTA = 20
_HEDGE = re.compile(
    r"\b(?:possibl[ey]|probabl[ey]|likely|may|might|could|cannot|can not|suspicious|suggest\w*"
    r"|question\w*|versus|vs|or|concern\w*|borderline|equivocal|differential|favou?r\w*)\b",
    re.IGNORECASE,
)
_SIDE = re.compile(r"\b(?:left|right|bilateral\w*|bibasilar|bibasal|biapical|both)\b", re.I)
_NEG = re.compile(r"\b(?:no|not|without|free of|clear of|resolved|negative|absence)\b", re.I)
DEVICE = re.compile(
    r"\b(?:(?:endotracheal|ET|NG|nasogastric|feeding|chest|enteric) tubes?|(?:central venous )?"
    r"catheters?|pacemaker(?: leads?)?|PICC(?: line)?|port|(?:sternotomy |surgical )?wires"
    r"|(?:surgical )?clips|stents?|leads|drains?|hardware|devices?)\b",
    re.IGNORECASE,
)


def _sentence_of(text: str, start: int) -> str:
    position = 0
    for sentence in split_sentences(text):
        at = text.find(sentence, position)
        position = at + len(sentence)
        if at <= start < position:
            return sentence
    return ""


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        reports = [json.loads(line) for line in handle]
    candidates = []
    devices = []
    for report in reports:
        text = report["inputs"]
        mentions = find_mentions(text)
        seen = set()
        for m in mentions:
            key = (m.start, m.start + len(m.text))
            if key in seen:  # a compound form asserting two concepts: one target
                continue
            seen.add(key)
            sentence = _sentence_of(text, m.start)
            in_sentence = sum(1 for o in mentions if sentence and o.text in sentence)
            candidates.append((report["idx"], text, m, sentence, in_sentence))
        for d in DEVICE.finditer(text):
            if not any(m.start <= d.start() < m.start + len(m.text) for m in mentions):
                devices.append((report["idx"], text, d))
    rng = random.Random(SEED)
    rng.shuffle(candidates)
    rng.shuffle(devices)
    filled = dict.fromkeys(QUOTAS, 0)
    chosen = []
    for idx, text, m, sentence, in_sentence in candidates:
        cues = {
            "hedge": bool(_HEDGE.search(sentence)),
            "side": bool(_SIDE.search(sentence)),
            "multi": in_sentence >= 3,
            "plain": not _NEG.search(sentence),
            "neg": bool(_NEG.search(sentence)),
        }
        for stratum, quota in QUOTAS.items():
            if cues[stratum] and filled[stratum] < quota:
                filled[stratum] += 1
                chosen.append((idx, text, m.start, m.start + len(m.text), m.concept, stratum))
                break
    for idx, text, d in devices[:DEVICE_QUOTA]:
        chosen.append((idx, text, d.start(), d.end(), "device", "device"))
    chosen.sort(key=lambda c: (c[0], c[2]))
    for idx, text, start, end, concept, stratum in chosen:
        row = {
            "id": f"v{idx}-{start}",
            "source": "openi-validate",
            "report_idx": idx,
            "stratum": stratum,
            "text": text,
            "start": start,
            "end": end,
            "surface": text[start:end],
            "concept": concept,
            "in_lexicon": concept != "device",
        }
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
