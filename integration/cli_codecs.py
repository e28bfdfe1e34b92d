"""``radgpt parse`` and ``radgpt render``: the codecs on the command line.

Stable contract (scripts depend on it):

* ``radgpt parse FILE`` prints ``{"reports": [<RadiologyReport.summary()>, ...]}``;
* ``radgpt render FILE --impression TEXT`` prints the preliminary write-back (ER7 one segment
  per line for HL7 input; a FHIR transaction Bundle for FHIR input); ``--final --radiologist
  ID`` prints the final report instead.

Bad input exits with code 2 and one line ``error: ...`` on stderr (see :mod:`integration.cli`).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M"
DEFAULT_ADAPTER_ID = "radiology"

_FileArg = Annotated[
    Path,
    typer.Argument(help="HL7 v2 (.hl7, raw or MLLP-framed) or FHIR R4 JSON (.json) file."),
]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise OSError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise OSError(f"is a directory: {path}") from exc


def parse(file: _FileArg) -> None:
    """Parse FILE and print its radiology reports as JSON."""
    from .codec import parse_message

    reports = parse_message(_read(file))
    typer.echo(
        json.dumps({"reports": [r.summary() for r in reports]}, indent=2, ensure_ascii=False)
    )


def render(
    file: _FileArg,
    impression: Annotated[str, typer.Option(help="The impression text to write back.")],
    final: Annotated[
        bool, typer.Option("--final", help="Write the final (approved) report instead.")
    ] = False,
    radiologist: Annotated[
        str | None, typer.Option(help="Approving radiologist id (required with --final).")
    ] = None,
    radiologist_name: Annotated[
        str | None, typer.Option(help="Radiologist name as 'Family^Given' (optional).")
    ] = None,
    model_id: Annotated[str, typer.Option(help="Base model identity.")] = DEFAULT_MODEL_ID,
    adapter_id: Annotated[str, typer.Option(help="LoRA adapter identity.")] = DEFAULT_ADAPTER_ID,
    adapter_version: Annotated[str | None, typer.Option(help="LoRA adapter version.")] = None,
    status: Annotated[
        str, typer.Option(help="HL7 preliminary status: P (default) or R (not verified).")
    ] = "P",
    accession: Annotated[
        str | None, typer.Option(help="Render only the report with this accession.")
    ] = None,
) -> None:
    """Print the write-back for FILE with IMPRESSION: preliminary, or --final."""
    from .codec import detect_format, parse_message
    from .errors import RenderError
    from .fhir_writer import build_final_bundle, build_preliminary_bundle
    from .hl7_writer import build_final_oru, build_preliminary_oru
    from .report import Approval, Clinician, DraftProvenance

    raw = _read(file)
    fmt = detect_format(raw)
    reports = parse_message(raw)
    if accession is not None:
        reports = [r for r in reports if r.accession == accession]
    if not reports:
        raise RenderError(f"no radiology report with findings to render in {file.name}")
    if status not in ("P", "R"):
        raise ValueError("--status must be P or R")
    if not impression.strip():
        raise ValueError("--impression must not be empty")
    now = datetime.now(UTC)
    draft = DraftProvenance(
        draft_id=uuid.uuid4().hex,
        model_id=model_id,
        adapter_id=adapter_id,
        adapter_version=adapter_version,
        drafted_at=now,
    )
    approval: Approval | None = None
    if final:
        if not radiologist:
            raise ValueError("--final needs --radiologist ID")
        family, _, given = (radiologist_name or "").partition("^")
        approval = Approval(
            radiologist=Clinician(id=radiologist, family=family or None, given=given or None),
            approved_at=now,
            draft_id=draft.draft_id,
        )
    if fmt == "hl7v2":
        messages = [
            build_final_oru(r, impression, approval, draft=draft, now=now)
            if approval is not None
            else build_preliminary_oru(
                r, impression, draft, status="R" if status == "R" else "P", now=now
            )
            for r in reports
        ]
        typer.echo("\n\n".join(m.rstrip("\r").replace("\r", "\n") for m in messages))
        return
    bundles = [
        build_final_bundle(r, impression, approval, draft=draft, now=now)
        if approval is not None
        else build_preliminary_bundle(r, impression, draft, now=now)
        for r in reports
    ]
    bundle = bundles[0]
    for extra in bundles[1:]:
        seen = {e["fullUrl"] for e in bundle["entry"]}
        bundle["entry"].extend(e for e in extra["entry"] if e["fullUrl"] not in seen)
    typer.echo(json.dumps(bundle, indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add ``parse`` and ``render`` to the radgpt CLI."""
    app.command("parse")(parse)
    app.command("render")(render)
