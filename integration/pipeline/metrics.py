"""Prometheus metrics of the pipeline, on a registry of their own (one per service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "PipelineMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class PipelineMetrics:
    """Counters, gauges and histograms of the Kafka workers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "radgpt_messages_total",
            "Inbound messages by topic and outcome "
            "(drafted, skipped, duplicate, final_matched, dead_lettered).",
            ["topic", "outcome"],
            registry=r,
        )
        self.drafts = Counter(
            "radgpt_drafts_total", "AI drafts stored, by adapter.", ["adapter"], registry=r
        )
        self.outputs = Counter(
            "radgpt_outputs_published_total",
            "Preliminary outputs acknowledged by Kafka, by format.",
            ["format"],
            registry=r,
        )
        self.dead_letters = Counter(
            "radgpt_dead_letters_total",
            "Messages sent to the dead-letter topic, by error class.",
            ["error_class"],
            registry=r,
        )
        self.retries = Counter(
            "radgpt_retries_total",
            "Retriable failures (the message is retried with backoff), by error class.",
            ["error_class"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "radgpt_end_to_end_latency_seconds",
            "From the inbound message's Kafka timestamp to its outputs being acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "radgpt_model_latency_seconds",
            "Model server latency per draft.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "radgpt_processing_seconds",
            "From a worker taking a message to its completion (retries included).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "radgpt_in_flight_messages", "Messages being processed now.", registry=r
        )
        self.paused_partitions = Gauge(
            "radgpt_paused_partitions", "Partitions paused for backpressure or retry.", registry=r
        )
        self.lag = Gauge(
            "radgpt_consumer_lag",
            "Messages not yet committed: high watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.fault_paused = Gauge(
            "radgpt_fault_paused",
            "1 while all consumption is paused because this dependency is down.",
            ["dependency"],
            registry=r,
        )
        self.last_progress = Gauge(
            "radgpt_last_progress_timestamp_seconds",
            "Unix time a message last finished (drafted, skipped or dead-lettered); "
            "the worker's start time before the first.",
            registry=r,
        )
        self.dead_letter_failures = Counter(
            "radgpt_dead_letter_failures_total",
            "Failed attempts to dead-letter a message (it is kept and retried), by error class.",
            ["error_class"],
            registry=r,
        )
        self.worker_failures = Counter(
            "radgpt_worker_task_failures_total",
            "Message tasks that ended with an unhandled error (the worker then exits).",
            registry=r,
        )
        self.commits = Counter(
            "radgpt_offset_commits_total", "Offset commits sent to the broker.", registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric in this registry."""
        return generate_latest(self.registry)
