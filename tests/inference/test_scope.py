"""Scope gating: chest radiographs in, everything the adapter was not validated on out."""

from __future__ import annotations

import pytest

from inference.drafting.scope import DEFAULT_SCOPE, Scope, decide, parse_scope_items

CHEST = "Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax."
HEAD = (
    "There is an acute left subdural hematoma measuring 8 mm with 4 mm of midline shift. "
    "The ventricles are mildly compressed. No skull fracture."
)


@pytest.mark.parametrize(
    ("kwargs", "in_scope", "basis"),
    [
        ({"procedure_code": "71046", "procedure_text": "XR CHEST 2 VIEWS"}, True, "procedure_code"),
        ({"procedure_text": "XR CHEST PA AND LATERAL"}, True, "procedure"),
        ({"procedure_text": "CHEST PORTABLE", "modality": "RAD"}, True, "procedure"),
        ({"procedure_text": "CT CHEST WITH CONTRAST"}, False, "procedure"),
        ({"procedure_text": "XR ABDOMEN 1 VIEW"}, False, "procedure"),
        ({"modality": "CT"}, False, "procedure"),
        ({}, True, "findings"),
    ],
)
def test_chest_radiographs_only(kwargs: dict[str, str], in_scope: bool, basis: str) -> None:
    decision = decide(DEFAULT_SCOPE, findings=CHEST, **kwargs)
    assert (decision.in_scope, decision.basis) == (in_scope, basis), decision.reason


def test_head_ct_is_out_whatever_it_is_called() -> None:
    for kwargs in ({"procedure_text": "CT HEAD WO CONTRAST"}, {}, {"modality": "RAD"}):
        decision = decide(DEFAULT_SCOPE, findings=HEAD, **kwargs)
        assert not decision.in_scope, kwargs
    # a chest code over brain findings: the findings veto
    vetoed = decide(DEFAULT_SCOPE, findings=HEAD, procedure_code="71046")
    assert not vetoed.in_scope and "head" in vetoed.reason


def test_findings_that_name_no_anatomy_are_not_drafted_without_a_procedure() -> None:
    assert not decide(DEFAULT_SCOPE, findings="Unremarkable study.").in_scope
    assert decide(
        DEFAULT_SCOPE, findings="Unremarkable study.", procedure_text="XR CHEST 1 VIEW"
    ).in_scope


def test_a_site_adds_validated_scopes() -> None:
    extended = DEFAULT_SCOPE.extended(["CT:CHEST", "code:71250"])
    assert decide(extended, findings=CHEST, procedure_text="CT CHEST W CONTRAST").in_scope
    assert decide(extended, findings=CHEST, procedure_code="71250").in_scope
    assert not decide(extended, findings=HEAD, procedure_text="CT HEAD").in_scope


@pytest.mark.parametrize("bad", ["CT", "code:", ":CHEST"])
def test_bad_scope_items_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="MODALITY:BODYPART"):
        parse_scope_items([bad])


def test_scope_json_round_trip() -> None:
    scope = Scope.from_json(DEFAULT_SCOPE.to_json())
    assert scope == DEFAULT_SCOPE
    with pytest.raises(ValueError):
        Scope.from_json({"modalities": ["XR"]})


def test_the_shipped_adapter_declares_chest_radiographs() -> None:
    from inference.drafting.adapters import read_adapter_info, shipped_adapter_dir
    from inference.drafting.drafter import adapter_scope

    directory = shipped_adapter_dir()
    assert directory is not None
    info = read_adapter_info(directory)
    assert "scope" in info.raw
    assert adapter_scope(info) == DEFAULT_SCOPE
