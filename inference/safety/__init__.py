"""Rule-based safety checks for AI-drafted impressions.

The draft IMPRESSION is compared with the FINDINGS it was drafted from, and every statement
a reviewing radiologist must look at is reported as a :class:`SafetyFlag`:

``negation_flip``
    a finding is present in one text and stated as absent in the other;
``laterality_conflict``
    the draft puts a finding on a side the findings do not (bilateral vs one side included);
``invented_finding``
    the draft asserts a finding that no finding (nor a related one) in the findings supports;
``omitted_critical``
    a critical finding present (or hedged) in the findings is not mentioned by the draft;
``unreported_finding``
    a reportable (not incidental, not chronic) positive finding of the findings that the
    draft neither mentions nor summarises by a related finding;
``anatomical_scope``
    the draft speaks of a body region the findings do not describe (lungs for a head CT).

The checks are pure, deterministic functions of the two strings: a finding lexicon
(:mod:`~inference.safety.lexicon`, data only), the assertion engine
(:mod:`~inference.safety.assertion`: sentence/clause splitting, NegEx-style negation and
hedge scopes, laterality attachment) and the checks themselves
(:mod:`~inference.safety.checks`); :mod:`~inference.safety.anatomy` names body regions.
No model is involved, so the checks run in well under a millisecond
per report and can be applied to every draft and to whole evaluation sets.  They are English
only and meant to direct attention, not to certify a draft (see ``docs/safety-checks.md``).
"""

from __future__ import annotations

from .assertion import Mention, find_mentions, split_clauses, split_sentences
from .checks import FLAG_KINDS, FlagKind, SafetyFlag, Severity, check_draft, summarise_flags
from .lexicon import CRITICAL_CONCEPTS, INCIDENTAL_CONCEPTS, LEXICON, Concept

__all__ = [
    "CRITICAL_CONCEPTS",
    "FLAG_KINDS",
    "INCIDENTAL_CONCEPTS",
    "LEXICON",
    "Concept",
    "FlagKind",
    "Mention",
    "SafetyFlag",
    "Severity",
    "check_draft",
    "find_mentions",
    "split_clauses",
    "split_sentences",
    "summarise_flags",
]
