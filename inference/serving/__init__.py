"""Running the embedded model: ``model`` (:class:`~inference.serving.model.LocalModel`,
torch + peft), ``batching`` (the dynamic batcher), ``engine`` (the engines the server and
the local backend share, including the torch-free ``instant`` one) and ``server``
(``radgpt serve-model``, the TGI- and OpenAI-compatible HTTP API).

Modules are imported on use: ``import inference.serving`` does not load torch.
"""

from __future__ import annotations

__all__: list[str] = []
