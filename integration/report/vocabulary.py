"""The words the whole service shares, defined once.

Draft statuses (the review workflow, the database, the API), the result statuses that mean
an order was cancelled or entered in error (pipeline and review alike), the codes that mark
the FINDINGS and IMPRESSION sections (HL7 and FHIR readers alike) and what "the same text"
means when impressions and findings are compared.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "DRAFT_STATUSES",
    "FINAL_STATUSES",
    "FINDINGS_CODES",
    "IMPRESSION_CODES",
    "RIS_CANCELLED",
    "DraftStatus",
    "WithdrawalReason",
    "normalise_whitespace",
    "withdrawal_notice",
]

DraftStatus = Literal["pending_review", "approved", "edited", "rejected", "superseded"]
DRAFT_STATUSES: Final[tuple[DraftStatus, ...]] = get_args(DraftStatus)

#: Why a published preliminary is withdrawn.
WithdrawalReason = Literal["rejected", "superseded"]

#: Result statuses (OBR-25 / DiagnosticReport.status, lower case) of a cancelled order or a
#: report entered in error: no draft is made, a pending one is withdrawn.
RIS_CANCELLED: Final = frozenset({"x", "w", "cancelled", "entered-in-error"})
#: Result statuses of a signed report (final, corrected, amended).
FINAL_STATUSES: Final = frozenset({"f", "final", "c", "corrected", "amended"})

#: FINDINGS: LOINC 18782-3 (radiology study observation), 59776-5 (procedure findings),
#: DICOM 121071 (Finding).  IMPRESSION: LOINC 19005-8, DICOM 121073 (Impression).
FINDINGS_CODES: Final = frozenset({"18782-3", "59776-5", "121071"})
IMPRESSION_CODES: Final = frozenset({"19005-8", "121073"})


def normalise_whitespace(text: str) -> str:
    """All runs of whitespace (line breaks included) as single spaces, trimmed: what
    "identical" means when two impressions or two findings are compared."""
    return " ".join(text.split())


def withdrawal_notice(reason: WithdrawalReason, draft_id: str) -> str:
    """What a withdrawal (HL7 NTE, FHIR conclusion) tells the reader of the preliminary."""
    why = (
        "rejected by the reviewing radiologist"
        if reason == "rejected"
        else "superseded by a newer report for this accession"
    )
    return (
        f"WITHDRAWN: the preliminary AI-drafted impression (draft {draft_id}) was {why}. "
        "Disregard it; the radiologist's report follows."
    )
