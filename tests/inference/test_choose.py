"""Verify and choose: the first candidate that passes the checks wins."""

from __future__ import annotations

from inference.drafting.choose import best_candidate, verify

FINDINGS = "Moderate right pleural effusion. No pneumothorax. Heart size normal."


def test_a_normal_template_over_an_effusion_is_rejected() -> None:
    verdict = verify(FINDINGS, "No acute cardiopulmonary abnormality.")
    assert not verdict.passes
    assert {f.kind for f in verdict.blocking} == {"omitted_critical"}


def test_the_first_passing_candidate_wins_in_generation_order() -> None:
    verdicts = [
        verify(FINDINGS, "No acute cardiopulmonary abnormality."),
        verify(FINDINGS, "Left pleural effusion."),  # wrong side
        verify(FINDINGS, "Moderate right pleural effusion."),
        verify(FINDINGS, "Right pleural effusion."),
    ]
    assert [v.passes for v in verdicts] == [False, False, True, True]
    assert verdicts[1].blocking[0].kind == "laterality_conflict"
    chosen = best_candidate(verdicts)
    assert chosen is not None and chosen.text == "Moderate right pleural effusion."


def test_no_passing_candidate_means_none() -> None:
    verdicts = [
        verify(FINDINGS, "No acute cardiopulmonary abnormality."),
        verify(FINDINGS, "Right pleural effusion and pneumothorax."),  # flips a negation
    ]
    assert best_candidate(verdicts) is None
    assert verdicts[1].rank[0] >= 1  # a critical flag ranks it down


def test_blocking_kinds_can_be_narrowed() -> None:
    verdict = verify(
        "Small left pleural effusion.", "No acute abnormality.", blocking=frozenset()
    )
    assert verdict.passes and verdict.flags
