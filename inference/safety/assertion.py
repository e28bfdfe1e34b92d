"""The assertion engine: which findings a text mentions, and whether it asserts, hedges or
denies each, on which side.

Sentence and clause splitting, lexicon matching (one dispatch regex per first character),
NegEx-style trigger scopes and laterality attachment over the data of
:mod:`inference.safety.lexicon`.  :func:`find_mentions` lists the mentions; :func:`assess`
aggregates them per finding (cached; the result is immutable).  Pure functions; English
only.  Compared with medspaCy's ConText in ``docs/safety-checks.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from inference.safety.lexicon import (
    BY_NAME,
    CHRONIC,
    IMPLIED_ABSENT,
    INCIDENTAL_CONCEPTS,
    INCIDENTAL_WHEN_CHRONIC,
    LEXICON,
    RELATED,
    TERMINATORS,
    TRIGGER_BY_NAME,
    TRIGGERS,
    Concept,
    Polarity,
    Side,
)

__all__ = [
    "NOT_MENTIONED",
    "ConceptStatus",
    "Mention",
    "assess",
    "find_mentions",
    "reportable",
    "split_clauses",
    "split_sentences",
]


# Surface forms with an inherent side (levoscoliosis is convex to the left).
_INHERENT_SIDE: Final = re.compile(r"^(levo|dextro)", re.IGNORECASE)


_ANY_START: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _first_chars(fragment: str) -> frozenset[str]:
    """Lower-case characters a match of ``fragment`` can start with.

    A small analyser for the regex subset used in :data:`LEXICON` (literals, classes,
    non-capturing groups, alternation, quantifiers, lookaheads); anything else is
    answered conservatively with every character.
    """
    chars, _ = _seq_first(fragment)
    return frozenset(chars)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = text.index("]", i + 1) + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _seq_first(seq: str) -> tuple[set[str], bool]:
    """(first characters, whether the sequence can match the empty string)."""
    alternatives = _split_top(seq)
    if len(alternatives) > 1:
        chars: set[str] = set()
        nullable = False
        for alternative in alternatives:
            c, n = _seq_first(alternative)
            chars |= c
            nullable |= n
        return chars, nullable
    chars = set()
    i = 0
    while i < len(seq):
        atom_chars: set[str]
        zero_width = False
        ch = seq[i]
        if ch == "(":
            depth, j = 1, i + 1
            while depth:
                if seq[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(seq[j], 0)
                j += 1
            inner = seq[i + 1 : j - 1]
            if inner.startswith(("?=", "?!", "?<")):
                zero_width, atom_chars, atom_null = True, set(), True
            else:
                inner = re.sub(r"^\?(?::|P<\w+>)", "", inner)
                atom_chars, atom_null = _seq_first(inner)
            i = j
        elif ch == "[":
            j = seq.index("]", i + 1)
            body = seq[i + 1 : j]
            atom_chars = set(_ANY_START) if body.startswith("^") or "\\" in body else set()
            if not atom_chars:
                for k, member in enumerate(body):
                    if member == "-" and 0 < k < len(body) - 1:
                        atom_chars |= {chr(x) for x in range(ord(body[k - 1]), ord(body[k + 1]))}
                    atom_chars.add(member.lower())
            atom_null = False
            i = j + 1
        elif ch == "\\":
            escaped = seq[i + 1]
            atom_chars = set(_ANY_START) if escaped.isalpha() else {escaped}
            atom_null = escaped == "b"
            i += 2
        elif ch in ".^$":
            atom_chars, atom_null = set(_ANY_START), ch != "."
            i += 1
        else:
            atom_chars, atom_null = {ch.lower()}, False
            i += 1
        if i < len(seq) and seq[i] in "?*{":
            atom_null = True if seq[i] != "{" or seq[i + 1] == "0" else atom_null
            i = seq.index("}", i) + 1 if seq[i] == "{" else i + 1
        elif i < len(seq) and seq[i] == "+":
            i += 1
        if i < len(seq) and seq[i] == "?":  # lazy quantifier
            i += 1
        chars |= atom_chars
        if not (atom_null or zero_width):
            return chars, False
    return chars, True


def _compile_concepts() -> tuple[dict[str, re.Pattern[str]], tuple[str, ...]]:
    """One regex per possible first character: trying ~150 alternatives at every word
    would cost a millisecond per report, the dispatch a few dozen microseconds."""
    parts: list[tuple[str, frozenset[str]]] = []
    names: list[str] = []
    for concept in LEXICON:
        for pattern in concept.patterns:
            parts.append((f"(?P<g{len(names)}>{pattern})", _first_chars(pattern)))
            names.append(concept.name)
    # Longer fragments first so "pleural effusion" wins over "effusion" at the same spot.
    parts.sort(key=lambda part: -_literal_length(part[0]))
    buckets: dict[str, re.Pattern[str]] = {}
    for ch in sorted(_ANY_START):
        chosen = [fragment for fragment, first in parts if ch in first]
        if chosen:
            buckets[ch] = re.compile(r"(?:" + "|".join(chosen) + r")\b", re.IGNORECASE)
    return buckets, tuple(names)


def _literal_length(fragment: str) -> int:
    """Length of a regex fragment without its syntax: a proxy for how specific it is."""
    return len(re.sub(r"\(\?P<g\d+>|[()?:|\\\[\]+*]", "", fragment))


_CONCEPT_BUCKETS, _GROUP_CONCEPT = _compile_concepts()
_WORD_START_RE: Final = re.compile(r"\b\w")


def _concept_matches(text: str) -> Iterator[re.Match[str]]:
    """Leftmost, non-overlapping lexicon matches starting at word boundaries."""
    resume = 0
    for word in _WORD_START_RE.finditer(text):
        at = word.start()
        if at < resume:
            continue
        bucket = _CONCEPT_BUCKETS.get(text[at].lower())
        if bucket is None:
            continue
        m = bucket.match(text, at)
        if m is not None:
            resume = m.end()
            yield m


_PE_RE: Final = re.compile(r"\bPE\b")  # upper-case only: pulmonary embolism

_ALTERNATIVE_REACH: Final = 40  # characters an "or"/"versus" reaches to either side


def _trigger_regex() -> re.Pattern[str]:
    parts = [f"(?P<{g.name}>{'|'.join(g.phrases)})" for g in TRIGGERS]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


_TRIGGER_RE: Final = _trigger_regex()
_TERMINATOR_RE: Final = re.compile(
    r"\s*;\s*|\s*:\s+|\s*\b(?=(?:" + "|".join(TERMINATORS) + r")\b)", re.IGNORECASE
)
# Sentence ends, newlines and list markers ("... effusions 2. Nodule"), but not the space
# after a list number itself ("1. No acute ...").
_SENTENCE_RE: Final = re.compile(
    r"(?<=[.!?])(?<!\b\d\.)(?<!\b\d\d\.)\s+(?=\S)|\n+|\s+(?=\d{1,2}[.)]\s)"
)
_WORD_RE: Final = re.compile(r"[A-Za-z][A-Za-z'/-]*|\d+(?:\.\d+)?")
_SIDE_RE: Final = re.compile(
    r"\b(?P<left>left(?:-sided|ward)?)\b|\b(?P<right>right(?:-sided|ward)?)\b"
    r"|\b(?P<both>bilateral(?:ly)?|bibasilar|bibasal|biapical|bilobar"
    r"|both(?=\s+(?:\w+\s+)?(?:lungs|lobes|bases|apices|sides|hemithoraces|hila|hilar|kidneys"
    r"|breasts|lower|upper|mid|costophrenic|hemidiaphragms|pleural)))\b"
    r"|\b(?P<lr>[LR]|[Ll]t|[Rr]t)\b(?=\.?\s+(?:upper|lower|mid|middle|lung|base|basilar|apical"
    r"|apex|hemithorax|hilar|hilum|pleural|chest|lobe|costophrenic|kidney|breast"
    r"|hemidiaphragm|rib|sided|side)\b)",
    re.IGNORECASE,
)
_LR_CASE_RE: Final = re.compile(r"^(?:[LR]|[Ll]t|[Rr]t)$")
_HEDGED_SURFACE: Final = re.compile(r"borderline|upper limits? of normal|top.normal", re.IGNORECASE)
# Words allowed between a finding and a side word before it ("left ... effusion") or after
# it ("consolidation in the left upper lobe and both lower lobes").
_MAX_GAP_BEFORE: Final = 6
_MAX_GAP_AFTER: Final = 10

_OTHERWISE_RE: Final = re.compile(
    r"\b(?:otherwise|other|else|additional|further|new)\b", re.IGNORECASE
)


# --- data shapes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mention:
    """One occurrence of a lexicon concept in a text, with its assertion status."""

    concept: str
    text: str
    start: int
    polarity: Polarity
    sides: frozenset[Side]
    qualifiers: frozenset[str]
    critical: bool


@dataclass(frozen=True, slots=True)
class ConceptStatus:
    """What one text says about one concept, aggregated over its mentions."""

    present: bool = False
    uncertain: bool = False
    absent: bool = False
    unasserted: bool = False
    implied_absent: bool = False
    critical: bool = False
    reportable: bool = False
    sides: frozenset[Side] = frozenset()
    absent_sides: frozenset[Side] = frozenset()
    absent_unsided: bool = False

    @property
    def positive(self) -> bool:
        return self.present or self.uncertain

    @property
    def mentioned(self) -> bool:
        return self.present or self.uncertain or self.absent or self.unasserted


#: The status of a concept a text does not mention at all.
NOT_MENTIONED: Final = ConceptStatus()


@dataclass(slots=True)
class _StatusBuilder:
    """:class:`ConceptStatus` while the mentions of a text are being aggregated."""

    present: bool = False
    uncertain: bool = False
    absent: bool = False
    unasserted: bool = False
    implied_absent: bool = False
    critical: bool = False
    reportable: bool = False
    sides: set[Side] = field(default_factory=set)
    absent_sides: set[Side] = field(default_factory=set)
    absent_unsided: bool = False

    @property
    def positive(self) -> bool:
        return self.present or self.uncertain

    @property
    def mentioned(self) -> bool:
        return self.present or self.uncertain or self.absent or self.unasserted

    def freeze(self) -> ConceptStatus:
        return ConceptStatus(
            self.present,
            self.uncertain,
            self.absent,
            self.unasserted,
            self.implied_absent,
            self.critical,
            self.reportable,
            frozenset(self.sides),
            frozenset(self.absent_sides),
            self.absent_unsided,
        )


# --- text splitting ------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """Split a report section into sentences (also at numbered-list markers and newlines)."""
    return [s.strip() for s in _SENTENCE_RE.split(text) if s and s.strip(" .")]


def split_clauses(sentence: str) -> list[str]:
    """Split a sentence at scope terminators (";", "but", "however", "although", ...).

    The terminator word starts the next clause, so negation in one clause never reaches
    a finding in the next one.
    """
    clauses: list[str] = []
    start = 0
    for match in _TERMINATOR_RE.finditer(sentence):
        if match.start() == 0 and match.end() == 0:
            continue
        piece = sentence[start : match.start()].strip(" ,")
        if piece:
            clauses.append(piece)
        start = match.end()
    tail = sentence[start:].strip(" ,.")
    if tail:
        clauses.append(tail)
    return clauses


# --- mention extraction --------------------------------------------------------------------


def _words_between(text: str, a: int, b: int) -> int:
    return len(_WORD_RE.findall(text[a:b])) if b > a else 0


def _qualifiers(
    clause: str, lo: int, start: int, end: int, hi: int
) -> tuple[frozenset[str], frozenset[str]]:
    """Words modifying a mention, not reaching past a neighbouring mention: the wide set
    (8 words before, 3 after) and the near set (the 2 words just before it)."""
    before = [w.lower() for w in _WORD_RE.findall(clause[lo:start])[-8:]]
    after = [w.lower() for w in _WORD_RE.findall(clause[end:hi])[:3]]
    return frozenset((*before, *after)), frozenset(before[-2:])


def _is_critical(concept: Concept, qualifiers: frozenset[str]) -> bool:
    if concept.criticality == "always":
        return True
    if concept.criticality == "qualified":
        return bool(qualifiers & concept.critical_qualifiers)
    if concept.criticality == "unless_chronic":
        return not qualifiers & CHRONIC
    return False


def _clause_mentions(clause: str, offset: int) -> list[Mention]:
    raw: list[tuple[str, int, int, str]] = []
    for m in _concept_matches(clause):
        group = m.lastgroup
        if group is None:  # pragma: no cover - every alternative is a named group
            continue
        raw.append((_GROUP_CONCEPT[int(group[1:])], m.start(), m.end(), m.group()))
    for m in _PE_RE.finditer(clause):
        if not any(s <= m.start() < e for _, s, e, _ in raw):
            raw.append(("pulmonary embolism", m.start(), m.end(), m.group()))
    if not raw:
        return []
    raw.sort(key=lambda r: r[1])

    triggers = [
        (m.lastgroup or "", m.start(), m.end())
        for m in _TRIGGER_RE.finditer(clause)
        if not any(s <= m.start() < e for _, s, e, _ in raw)
    ]
    sides = _attach_sides(clause, raw)
    mentions: list[Mention] = []
    for index, (concept_name, start, end, surface) in enumerate(raw):
        concept = BY_NAME[concept_name]
        polarity = _polarity(clause, triggers, raw, index)
        lo = raw[index - 1][2] if index else 0
        hi = raw[index + 1][1] if index + 1 < len(raw) else len(clause)
        qualifiers, near = _qualifiers(clause, lo, start, end, hi)
        if polarity == "absent" and near & _LIMITING:
            polarity = "unasserted"
        if polarity == "present" and _HEDGED_SURFACE.search(surface):
            polarity = "uncertain"
        side_set = set(sides.get(index, ())) if concept.lateral else set()
        inherent = _INHERENT_SIDE.match(surface)
        if inherent:
            side_set.add("left" if inherent.group(1).lower() == "levo" else "right")
        names = [concept_name]
        names.extend(extra for prefix, extra in _COMPOUND_PREFIX if prefix.match(surface))
        for name in names:
            mentions.append(
                Mention(
                    concept=name,
                    text=surface,
                    start=offset + start,
                    polarity=polarity,
                    sides=frozenset(side_set) if BY_NAME[name].lateral else frozenset(),
                    qualifiers=qualifiers,
                    critical=_is_critical(BY_NAME[name], qualifiers),
                )
            )
    return mentions


# Negated with one of these ("no large effusion") does not deny a smaller finding.
_LIMITING: Final = frozenset(
    {
        "large",
        "significant",
        "sizable",
        "sizeable",
        "substantial",
        "appreciable",
        "moderate",
        "massive",
        "displaced",
        "overt",
        "gross",
        "frank",
        "typical",
        "cavitary",
        "suspicious",
        "new",
        "acute",
        "destructive",
        "dominant",
        "discrete",
        "enlarging",
        "noncalcified",
        "confluent",
        "lobar",
        "bacterial",
    }
)
# Compound surface forms that also assert a second concept ("hemopneumothorax").
_COMPOUND_PREFIX: Final = (
    (re.compile(r"ha?emo-?pneumothora", re.IGNORECASE), "hemorrhage"),
    (re.compile(r"hydro-?pneumothora", re.IGNORECASE), "pleural effusion"),
)


def _polarity(
    clause: str,
    triggers: Sequence[tuple[str, int, int]],
    raw: Sequence[tuple[str, int, int, str]],
    index: int,
) -> Polarity:
    """Assertion status of mention ``index``; negation wins over "unasserted", which wins
    over a hedge ("no pleural line to suggest pneumothorax" is a negation)."""
    _, start, end, _ = raw[index]
    effects: set[str] = set()
    for kind, t_start, t_end in triggers:
        group = TRIGGER_BY_NAME[kind]
        direction, effect = group.direction, group.effect
        if direction == "none":
            continue
        if direction == "both":
            # "atelectasis or infiltrate", "fat versus effusion": the neighbours only.
            if t_end <= start:
                reach = start - t_end
            elif t_start >= end:
                reach = t_start - end
            else:
                continue
            if reach <= _ALTERNATIVE_REACH and not _mention_between(raw, t_start, t_end, index):
                effects.add(effect)
            continue
        if direction == "post":
            # "Pneumothorax is not seen"; opening a clause with nothing before it, it reads
            # forward ("Resolved: left effusion").
            forward = not clause[:t_start].strip() and not any(e <= t_start for *_, e, _ in raw)
        else:
            # "No pneumothorax"; a hedge closing a clause reads backward ("Pneumonia possible").
            forward = not (
                effect == "hedge"
                and not clause[t_end:].strip(" .,")
                and not any(s >= t_end for _, s, _, _ in raw)
            )
        if forward:
            if t_end > start:
                continue
            if effect != "hedge" and _list_item_reasserts(clause, t_end, start):
                continue
        elif t_start >= end:
            # A backward trigger reaches back only to the previous trigger.
            if any(end <= o_start < t_start for _, o_start, _ in triggers):
                continue
        else:
            continue
        effects.add(effect)
    if "neg" in effects:
        return "absent"
    if "unasserted" in effects:
        return "unasserted"
    if "hedge" in effects:
        return "uncertain"
    return "present"


# After a comma, these open a new, positive statement: "No pneumothorax, small left effusion".
_REASSERT_RE: Final = re.compile(
    r"\b(?:small|moderate|large|mild|mildly|minimal|trace|severe|moderately|markedly|new|"
    r"increased|increasing|persistent|there|a|an|stable|residual|tiny|subtle|patchy|focal)\b",
    re.IGNORECASE,
)


def _list_item_reasserts(clause: str, t_end: int, start: int) -> bool:
    """Whether a comma between a negation and a mention starts a new positive statement."""
    between = clause[t_end:start]
    comma = between.rfind(",")
    if comma == -1:
        return False
    return bool(_REASSERT_RE.match(between[comma + 1 :].lstrip()))


def _mention_between(
    raw: Sequence[tuple[str, int, int, str]], t_start: int, t_end: int, index: int
) -> bool:
    """Whether another mention sits between mention ``index`` and a trigger."""
    _, start, end, _ = raw[index]
    lo, hi = (end, t_start) if t_start >= end else (t_end, start)
    return any(lo <= s and e <= hi for i, (_, s, e, _) in enumerate(raw) if i != index)


def _attach_sides(clause: str, raw: Sequence[tuple[str, int, int, str]]) -> dict[int, list[Side]]:
    """Attach each side word to the nearest finding mention in the clause."""
    attached: dict[int, list[Side]] = {}
    for m in _SIDE_RE.finditer(clause):
        if m.lastgroup == "lr":
            token = m.group()
            if not _LR_CASE_RE.match(token):
                continue
            found: list[Side] = ["left" if token[0] in "Ll" else "right"]
        elif m.lastgroup == "left":
            found = ["left"]
        elif m.lastgroup == "right":
            found = ["right"]
        else:
            found = ["left", "right"]
        best: tuple[int, int, int] | None = None  # (gap, prefer-following, index)
        for index, (_, start, end, _) in enumerate(raw):
            if start <= m.start() < end:
                gap, after = 0, 0
            elif end <= m.start():
                gap, after = _words_between(clause, end, m.start()), 1
            else:
                gap, after = _words_between(clause, m.end(), start), 0
            limit = _MAX_GAP_AFTER if after else _MAX_GAP_BEFORE
            if gap <= limit and (best is None or (gap, after) < best[:2]):
                best = (gap, after, index)
        if best is not None:
            attached.setdefault(best[2], []).extend(found)
    return attached


def find_mentions(text: str) -> list[Mention]:
    """All lexicon mentions in ``text`` with polarity, laterality and criticality."""
    mentions: list[Mention] = []
    position = 0
    for sentence in split_sentences(text):
        sentence_at = text.find(sentence, position)
        sentence_at = max(sentence_at, 0)
        position = sentence_at + len(sentence)
        clause_pos = 0
        for clause in split_clauses(sentence):
            clause_at = sentence.find(clause, clause_pos)
            clause_at = max(clause_at, 0)
            clause_pos = clause_at + len(clause)
            mentions.extend(_clause_mentions(clause, sentence_at + clause_at))
    return mentions


def _implied_absences(text: str) -> set[str]:
    denied: set[str] = set()
    for sentence in split_sentences(text):
        for pattern, concepts in IMPLIED_ABSENT:
            for m in pattern.finditer(sentence):
                lead = sentence[max(0, m.start() - 25) : m.end()]
                if _OTHERWISE_RE.search(lead):
                    continue
                denied |= concepts
    return denied


@lru_cache(maxsize=4096)
def assess(text: str) -> Mapping[str, ConceptStatus]:
    """What ``text`` says about each concept it mentions or implicitly denies (cached, so
    the result is read-only)."""
    statuses: dict[str, _StatusBuilder] = {}
    for mention in find_mentions(text):
        status = statuses.setdefault(mention.concept, _StatusBuilder())
        if mention.polarity == "present":
            status.present = True
        elif mention.polarity == "uncertain":
            status.uncertain = True
        elif mention.polarity == "absent":
            status.absent = True
            status.absent_sides |= mention.sides
            status.absent_unsided |= not mention.sides
        else:
            status.unasserted = True
        if mention.polarity in ("present", "uncertain"):
            status.sides |= mention.sides
            status.critical |= mention.critical
            status.reportable |= reportable(mention)
    positive = {name for name, s in statuses.items() if s.positive}
    for name in _implied_absences(text):
        if name in statuses and statuses[name].mentioned:
            continue
        if positive & (RELATED[name] | {name}):
            continue
        statuses.setdefault(name, _StatusBuilder()).implied_absent = True
    return MappingProxyType({name: st.freeze() for name, st in statuses.items()})


def reportable(mention: Mention) -> bool:
    if mention.concept in INCIDENTAL_CONCEPTS:
        return False
    return not (mention.concept in INCIDENTAL_WHEN_CHRONIC and mention.qualifiers & CHRONIC)
