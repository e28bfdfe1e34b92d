"""``radgpt parse`` and ``radgpt render``: the codecs on the command line.

Stable contract (scripts depend on it):

* ``radgpt parse FILE`` prints ``{"reports": [<RadiologyReport.summary()>, ...]}``;
* ``radgpt render FILE --impression TEXT`` prints the preliminary write-back of every report,
  exactly the bytes the pipeline publishes (:class:`integration.pipeline.publisher.Answer`): HL7 ER7
  with ``\\r`` segment separators in the character set MSH-18 declares (two messages are
  separated by one empty segment line), FHIR as one canonical JSON Bundle per line;
  ``--final --radiologist ID`` prints the final report instead; ``--draft-id`` and ``--at``
  reproduce a stored draft's answer; ``--out-dir`` writes one file per answer.

Files larger than ``pipeline.max_message_bytes`` are refused (at most limit + 1 bytes are
read).  Bad input exits with code 2 and one line ``error: ...`` on stderr (see
:mod:`integration.app.cli`).
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from integration.app.settings import PipelineSettings

__all__ = ["read_limited", "register"]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M"
DEFAULT_ADAPTER_ID = "radiology"

_FileArg = Annotated[
    Path,
    typer.Argument(help="HL7 v2 (.hl7, raw or MLLP-framed) or FHIR R4 JSON (.json) file."),
]


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of ``path``; :class:`MessageTooLarge` above ``limit`` (reads limit+1)."""
    from integration.errors import MessageTooLarge

    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise OSError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise OSError(f"is a directory: {path}") from exc
    if len(data) > limit:
        raise MessageTooLarge(
            f"{path.name} is larger than the message size limit of {limit} bytes "
            "(pipeline.max_message_bytes; set RADGPT_PIPELINE__MAX_MESSAGE_BYTES)"
        )
    return data


def _pipeline() -> PipelineSettings:
    from integration.app.settings import Settings

    return Settings().pipeline


def parse(file: _FileArg) -> None:
    """Parse FILE and print its radiology reports as JSON."""
    from integration.codecs.codec import CodecOptions, parse_message

    pipeline = _pipeline()
    raw = read_limited(file, pipeline.max_message_bytes)
    reports = parse_message(raw, CodecOptions.from_settings(pipeline))
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
    draft_id: Annotated[
        str | None,
        typer.Option(help="Draft id (default: a new one); with --at, the stored draft's answer."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Draft (or approval) time, ISO 8601 (default: now; UTC if no zone)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Write one file per answer into this directory instead of stdout."),
    ] = None,
) -> None:
    """Print the write-back for FILE with IMPRESSION (the pipeline's bytes): preliminary, or
    --final."""
    from integration.codecs.codec import CodecOptions, parse_message
    from integration.errors import RenderError
    from integration.pipeline.publisher import final_answer, formats_for, preliminary_answer
    from integration.report.model import Approval, Clinician, DraftProvenance

    pipeline = _pipeline()
    raw = read_limited(file, pipeline.max_message_bytes)
    reports = parse_message(raw, CodecOptions.from_settings(pipeline))
    if accession is not None:
        reports = [r for r in reports if r.accession == accession]
    if not reports:
        raise RenderError(f"no radiology report with findings to render in {file.name}")
    if status not in ("P", "R"):
        raise ValueError("--status must be P or R")
    if not impression.strip():
        raise ValueError("--impression must not be empty")
    now = datetime.now(UTC) if at is None else _parse_time(at)
    draft = DraftProvenance(
        draft_id=draft_id or uuid.uuid4().hex,
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
    pipeline = pipeline.model_copy(update={"hl7_preliminary_status": status})
    payloads: list[tuple[str, str, bytes]] = []
    for report in reports:
        formats = formats_for(report, output_formats=("hl7", "fhir"), answer_in_kind=True)
        answer = (
            final_answer(report, impression, approval, draft, pipeline=pipeline, formats=formats)
            if approval is not None
            else preliminary_answer(report, impression, draft, pipeline=pipeline, formats=formats)
        )
        payloads += [(fmt, report.accession or "", value) for fmt, value in answer.payloads()]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for index, (fmt, acc, value) in enumerate(payloads, start=1):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in acc)[:64]
            target = out_dir / f"{index:02d}-{safe or 'report'}.{'hl7' if fmt == 'hl7' else 'json'}"
            target.write_bytes(value)
            typer.echo(str(target))
        return
    out = sys.stdout.buffer
    for index, (fmt, _, value) in enumerate(payloads):
        if fmt == "hl7" and index:
            out.write(b"\r")  # one empty segment line between two messages
        out.write(value)
        if fmt == "fhir":
            out.write(b"\n")
    out.flush()


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--at: not an ISO 8601 date/time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    """Add ``parse`` and ``render`` to the radgpt CLI."""
    app.command("parse")(parse)
    app.command("render")(render)
