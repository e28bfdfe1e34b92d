"""Dynamic batching of ``radgpt serve-model``: reports per second at concurrency 1 and 8.

Starts ``radgpt serve-model`` (the real embedded model) as a subprocess, drafts the same
Open-i test findings once one at a time and once with 8 requests in flight (through the
project's ``tgi`` backend, greedy, fixed ``max_new_tokens``), and prints both rates and
their ratio.  Both are measured in the same run on the same machine.

    .venv/bin/python bench/bench_batching.py [--reports 16] [--max-new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.backends.tgi import TgiBackend  # noqa: E402
from inference.drafting.prompter import Prompter  # noqa: E402
from integration.pipeline.broker import free_port  # noqa: E402


def load_findings(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["inputs"] for r in rows[:n]]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "integration", "serve-model", "--engine", "model",
        "--port", str(port), "--cache-dir", str(args.cache_dir),
        "--batch-window-ms", str(args.window_ms), "--max-batch-size", str(args.concurrency),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve-model exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("serve-model did not start")


async def run(
    backend: TgiBackend, prompts: list[str], concurrency: int, max_new_tokens: int
) -> tuple[float, int]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while not queue.empty():
            prompt = queue.get_nowait()
            completion = await backend.generate(
                prompt, max_new_tokens=max_new_tokens, stop=("###",)
            )
            tokens += completion.generated_tokens or 0

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, tokens


async def main_async(args: argparse.Namespace, url: str) -> None:
    prompter = Prompter.load()
    prompts = [prompter.build(f) for f in load_findings(args.data, args.reports)]
    adapter = None if args.adapter in ("", "base") else args.adapter
    backend = TgiBackend(url, adapter_id=adapter, timeout_s=None)
    try:
        await run(backend, prompts[:2], 2, 4)  # warm-up
        seq_s, seq_tokens = await run(backend, prompts, 1, args.max_new_tokens)
        par_s, par_tokens = await run(backend, prompts, args.concurrency, args.max_new_tokens)
    finally:
        await backend.aclose()
    seq_rate = len(prompts) / seq_s
    par_rate = len(prompts) / par_s
    threads = args.threads or "torch default"
    print(
        f"reports: {len(prompts)}  max_new_tokens: {args.max_new_tokens}  "
        f"threads: {threads}  adapter: {adapter or 'base model'}"
    )
    print(f"concurrency 1: {seq_rate:.3f} reports/s ({seq_tokens / seq_s:.1f} tokens/s)")
    print(
        f"concurrency {args.concurrency}: {par_rate:.3f} reports/s "
        f"({par_tokens / par_s:.1f} tokens/s)"
    )
    print(f"ratio: {par_rate / seq_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--window-ms", type=float, default=30.0)
    parser.add_argument("--adapter", default="base", help="adapter name, or 'base'")
    parser.add_argument("--url", default="", help="benchmark a running server instead")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".radgpt" / "cache")
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "openi" / "test.jsonl"
    )
    args = parser.parse_args()
    if args.url:
        asyncio.run(main_async(args, args.url))
        return
    port = free_port()
    proc = start_server(args, port)
    try:
        asyncio.run(main_async(args, f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
