"""The Kafka pipeline: ``worker`` (consume, process, publish, commit), ``processor`` (one
message to its draft and answers), ``publisher``, ``kafka_client``, the embedded
``broker`` for demos and tests, ``faults`` and ``fault_gate`` (what a failure means:
retry, pause or dead-letter) and ``metrics``.
"""

from __future__ import annotations

__all__: list[str] = []
