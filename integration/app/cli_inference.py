"""``radgpt model prepare|canary``, ``radgpt serve-model`` and ``radgpt draft``.

Options map to small config dataclasses (:class:`~inference.backends.factory.BackendConfig`,
:class:`~inference.serving.server.ServerLimits`); defaults for ``draft`` come from the settings
(``RADGPT_INFERENCE__*``), read once here and translated into the inference package's
configs (``InferenceSettings.backend_config()``).  Heavy imports happen inside the commands.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from inference.serving.engine import Engine
    from inference.types import Draft

__all__ = ["parse_pairs", "register"]


def parse_pairs(values: list[str] | None, *, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}``; a malformed item is a ValueError."""
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what} must look like NAME=VALUE, got {item!r}")
        if key.strip() in pairs:
            raise ValueError(f"{what} {key.strip()!r} given twice")
        pairs[key.strip()] = value.strip()
    return pairs


def _quiet_model_loading() -> None:
    """No progress bars from transformers on the console (errors stay one line)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def _cache_dir(option: Path | None) -> Path:
    from inference.model_store import default_cache_dir
    from integration.app.settings import Settings

    xdg = os.environ.get("XDG_CACHE_HOME")
    return option or Settings().inference.cache_dir or default_cache_dir(xdg)


def _offline() -> None:
    """This process loads the model itself: no code path may reach a model hub."""
    from inference.model_store import set_offline

    set_offline(os.environ)


def prepare_command(
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache directory (default ~/.cache/radgpt)")
    ] = None,
    force: Annotated[bool, typer.Option(help="convert again even if present")] = False,
) -> None:
    """Convert the embedded base model (SmolLM2-135M GGUF) into a Hugging Face directory."""
    from inference.model_store import prepare_base_model

    _offline()
    typer.echo(str(prepare_base_model(_cache_dir(cache_dir), force=force)))


def canary_command(
    adapter_path: Annotated[Path, typer.Option(help="adapter directory with radgpt-adapter.json")],
    cache_dir: Annotated[Path | None, typer.Option(help="cache of the base model")] = None,
    base_model_dir: Annotated[
        Path | None,
        typer.Option(help="the adapter's base model directory (default: the embedded model)"),
    ] = None,
) -> None:
    """Add the chat-template canary (openai backend) to an adapter's radgpt-adapter.json."""
    from inference.drafting.adapters import METADATA_FILE, read_adapter_info
    from inference.drafting.canary import chat_canary
    from inference.drafting.prompter import Prompter
    from inference.model_store import prepare_base_model
    from inference.serving.model import LocalModel

    info = read_adapter_info(adapter_path)
    _offline()
    _quiet_model_loading()
    base = base_model_dir or prepare_base_model(_cache_dir(cache_dir))
    model = LocalModel(base, adapters={"a": adapter_path})
    fields = chat_canary(
        model,
        Prompter.load(info.prompt_template),
        info.canary,
        adapter="a",
        max_new_tokens=info.max_new_tokens,
    )
    data = dict(info.raw)
    data["canary"] = {**dict(data["canary"]), **fields}
    path = adapter_path / METADATA_FILE
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"{path}: expected_chat={fields['expected_chat']!r}")


def _adapters(pairs: list[str] | None, *, default_adapter: bool) -> dict[str, Path]:
    from inference.drafting.adapters import SHIPPED_ADAPTER, shipped_adapter_dir

    adapters = {name: Path(path) for name, path in parse_pairs(pairs, what="--adapter").items()}
    for name, path in adapters.items():
        if not (path / "adapter_config.json").is_file():
            raise ValueError(f"--adapter {name}: no peft adapter (adapter_config.json) in {path}")
    if default_adapter and SHIPPED_ADAPTER not in adapters:
        shipped = shipped_adapter_dir()
        if shipped is not None:
            adapters[SHIPPED_ADAPTER] = shipped
    return adapters


async def _self_check(engine: Engine, adapters: dict[str, Path]) -> None:
    """Run each adapter's canary against the loaded weights; refuse to serve on mismatch."""
    from inference.backends.local import LocalBackend
    from inference.drafting.adapters import METADATA_FILE, read_adapter_info
    from inference.drafting.canary import verify_adapter
    from inference.drafting.prompter import Prompter
    from inference.serving.engine import ModelEngine

    assert isinstance(engine, ModelEngine)
    for name, path in adapters.items():
        if not (path / METADATA_FILE).is_file():
            continue
        info = read_adapter_info(path)
        backend = LocalBackend(engine, adapter_id=name)
        await verify_adapter(backend, info, Prompter.load(info.prompt_template))


def serve_model_command(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    adapter: Annotated[
        list[str] | None, typer.Option("--adapter", help="NAME=PATH of a peft adapter (repeat)")
    ] = None,
    default_adapter: Annotated[
        bool, typer.Option(help="also serve the shipped adapter as 'radiology'")
    ] = True,
    engine: Annotated[
        Literal["model", "instant"], typer.Option(help="model, or the extractive instant engine")
    ] = "model",
    delay_ms: Annotated[float, typer.Option(help="instant engine: delay per request")] = 0.0,
    cache_dir: Annotated[Path | None, typer.Option(help="cache of the base model")] = None,
    base_model_dir: Annotated[
        Path | None, typer.Option(help="a prepared base model directory")
    ] = None,
    max_concurrent_requests: Annotated[int, typer.Option(help="429 beyond this")] = 128,
    max_input_tokens: Annotated[int, typer.Option()] = 1024,
    max_total_tokens: Annotated[int, typer.Option()] = 2048,
    batch_window_ms: Annotated[float, typer.Option(help="dynamic batching window")] = 30.0,
    max_batch_size: Annotated[int, typer.Option(help="largest batch")] = 16,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    verify: Annotated[
        bool, typer.Option(help="check each adapter's canary against its weights at startup")
    ] = True,
    require_api_key: Annotated[
        bool,
        typer.Option(help="require Bearer RADGPT_INFERENCE__API_KEY on generation routes"),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the embedded model over a TGI-compatible HTTP API (/generate, /v1/chat/...)."""
    from inference.serving.server import ServerLimits, run_server
    from integration.app.settings import Settings

    api_key: str | None = None
    if require_api_key:
        secret = Settings().inference.api_key
        if secret is None or not secret.get_secret_value():
            raise ValueError("--require-api-key needs RADGPT_INFERENCE__API_KEY to be set")
        api_key = secret.get_secret_value()

    limits = ServerLimits(
        max_concurrent_requests=max_concurrent_requests,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
    )
    adapters = _adapters(adapter, default_adapter=default_adapter)
    served: Engine
    if engine == "instant":
        from inference.serving.instant import InstantEngine

        served = InstantEngine(adapters=adapters, delay_s=delay_ms / 1000.0)
    else:
        from inference.model_store import prepare_base_model
        from inference.serving.engine import ModelEngine
        from inference.serving.model import LocalModel

        _offline()
        _quiet_model_loading()
        base = base_model_dir or prepare_base_model(_cache_dir(cache_dir))
        model = LocalModel(base, adapters=adapters, threads=threads)
        served = ModelEngine(
            model, window_s=batch_window_ms / 1000.0, max_batch_size=max_batch_size
        )
        if verify:
            asyncio.run(_self_check(served, adapters))
    typer.echo(
        f"serving {served.model_id} ({served.kind}) with adapters "
        f"{sorted(served.adapters) or '[]'} on http://{host}:{port}",
        err=True,
    )
    run_server(served, host=host, port=port, limits=limits, api_key=api_key, log_level=log_level)


def draft_command(
    findings: Annotated[str, typer.Option(help="the FINDINGS section text")],
    backend: Annotated[
        Literal["local", "tgi", "openai"] | None,
        typer.Option(help="backend (default: RADGPT_INFERENCE__BACKEND)"),
    ] = None,
    url: Annotated[str | None, typer.Option(help="model server URL")] = None,
    adapter: Annotated[str | None, typer.Option(help="adapter name on the server")] = None,
    adapter_path: Annotated[
        Path | None, typer.Option(help="adapter directory (metadata/canary; local weights)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="openai backend: model name")] = None,
    context: Annotated[
        list[str] | None, typer.Option("--context", help="KEY=VALUE, e.g. modality=CR")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per request")] = None,
    verify: Annotated[bool, typer.Option(help="run the adapter canary first")] = True,
    cache_dir: Annotated[Path | None, typer.Option(help="cache of the base model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the draft with provenance")] = (
        False
    ),
    procedure: Annotated[
        str | None, typer.Option(help="procedure name, e.g. 'XR CHEST 2 VIEWS' (scope check)")
    ] = None,
    procedure_code: Annotated[
        str | None, typer.Option(help="procedure code, e.g. 71046 (scope check)")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="modality, e.g. CR or CT")] = None,
    samples: Annotated[
        int | None,
        typer.Option(help="sampled candidates when the greedy draft fails the checks"),
    ] = None,
    fallback: Annotated[
        bool,
        typer.Option(
            help="when no candidate passes, write the extractive draft (--no-fallback shows "
            "the model's least-flagged candidate instead)"
        ),
    ] = True,
) -> None:
    """Draft the IMPRESSION for FINDINGS and print it (for checking a deployment by hand).

    The draft goes to stdout; its safety flags and method go to stderr.  Exit code 3 when a
    critical flag remains; 2 on bad input or a study outside the adapter's scope.
    """
    from dataclasses import replace

    from inference.drafting.drafter import Drafter
    from integration.app.settings import Settings

    settings = Settings().inference
    base = settings.backend_config()
    # A check by hand: one retry, not the pipeline's backoff (an absent server fails at once).
    policy = replace(base.policy, max_retries=min(base.policy.max_retries, 1))
    policy = policy if timeout is None else replace(policy, timeout_s=timeout)
    config = replace(
        base,
        backend=backend or base.backend,
        url=url or base.url,
        adapter=adapter if adapter is not None else base.adapter,
        adapter_path=adapter_path or base.adapter_path,
        model=model or base.model,
        max_new_tokens=max_new_tokens or base.max_new_tokens,
        verify_adapter=verify and base.verify_adapter,
        cache_dir=cache_dir or base.cache_dir,
        policy=policy,
    )
    ctx = parse_pairs(context, what="--context")
    if samples is not None and samples < 0:
        raise ValueError("--samples must not be negative")

    async def run() -> Draft:
        async with Drafter.from_config(
            config,
            samples=settings.samples if samples is None else samples,
            extra_scopes=tuple(settings.extra_scopes),
            fallback=fallback,
        ) as drafter:
            decision = drafter.check_scope(
                findings, procedure_code=procedure_code, procedure_text=procedure,
                modality=modality,
            )  # fmt: skip
            return await drafter.draft(findings, context=ctx or None, scope=decision)

    if config.backend == "local":  # model loading: never reach a hub
        _offline()
        _quiet_model_loading()
        result = asyncio.run(run())
    else:  # huggingface_hub in offline mode would refuse the model server too
        result = asyncio.run(run())
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.text)
    if result.method != "model":
        typer.echo(
            f"method: {result.method} (no model candidate of {result.candidates} passed the "
            f"checks: {', '.join(result.rejected)})",
            err=True,
        )
    for flag in result.safety_flags:
        typer.echo(f"flag: {flag.severity.upper()} {flag.kind}: {flag.detail}", err=True)
    if any(f.severity == "critical" for f in result.safety_flags):
        raise typer.Exit(3)


def _naming_the_server(command: Callable[..., None]) -> Callable[..., None]:
    """``draft`` with connection errors that name the model server URL and where to set it."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from inference.errors import BackendUnavailable
        from integration.app.settings import Settings

        try:
            command(*args, **kwargs)
        except BackendUnavailable as exc:
            url = kwargs.get("url")
            where = "--url" if url else "--url or RADGPT_INFERENCE__URL"
            shown = url or Settings().inference.url
            raise type(exc)(f"{exc} at {shown} (set {where})") from exc

    return wrapper


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="The embedded base model and adapters.", no_args_is_help=True)
    model_app.command("prepare")(prepare_command)
    model_app.command("canary")(canary_command)
    app.add_typer(model_app, name="model")
    app.command("serve-model")(serve_model_command)
    app.command("draft")(_naming_the_server(draft_command))
