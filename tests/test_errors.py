"""One error tree: every radgpt error has the same root, and its flags alone decide what the
worker, the resilient backend and the HTTP layers do with it."""

from __future__ import annotations

import inspect

import pytest

import inference.errors as inference_errors
import integration.errors as integration_errors
from integration.pipeline.faults import Fault, classify


def _classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module in (inference_errors, integration_errors):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj not in found:
                found.append(obj)
    return found


def test_one_root() -> None:
    assert integration_errors.RadgptError is inference_errors.RadgptError
    assert all(issubclass(c, inference_errors.RadgptError) for c in _classes())


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (inference_errors.BackendOverloaded("busy"), 429),
        (inference_errors.BackendTimeout("slow"), 504),
        (inference_errors.BackendFailure("boom"), 424),
        (inference_errors.UnknownAdapter("radiology-v9"), 404),
        (inference_errors.OutOfScope("CT head"), 422),
        (inference_errors.AdapterError("base model answered"), 503),
        (integration_errors.NotFoundError("draft 7"), 404),
        (integration_errors.ConflictError("already approved"), 409),
        (integration_errors.ForbiddenError("no role"), 403),
        (integration_errors.AuthError("expired"), 401),
        (integration_errors.InvalidResourceError("bad status"), 422),
        (integration_errors.DatabaseUnavailable("refused"), 503),
        (integration_errors.RetriesExhausted(3, ["a", "b", "c"]), 500),
    ],
)
def test_the_status_table(error: inference_errors.RadgptError, status: int) -> None:
    assert error.http_status == status


@pytest.mark.parametrize(
    ("error", "fault", "dependency"),
    [
        (inference_errors.BackendUnavailable("refused"), Fault.INFRASTRUCTURE, "model"),
        (inference_errors.CircuitOpen("open"), Fault.INFRASTRUCTURE, "model"),
        (inference_errors.AdapterError("wrong adapter"), Fault.INFRASTRUCTURE, "model"),
        (inference_errors.BackendFailure("500"), Fault.TRANSIENT, None),
        (inference_errors.GenerationFailed("empty"), Fault.MESSAGE, None),
        (integration_errors.DatabaseUnavailable("refused"), Fault.INFRASTRUCTURE, "database"),
        (integration_errors.BrokerUnavailable("no leader"), Fault.INFRASTRUCTURE, "broker"),
        (integration_errors.DuplicateKeyError("taken"), Fault.TRANSIENT, None),
        (integration_errors.DataRejected("NUL"), Fault.MESSAGE, None),
        (integration_errors.MessageParseError("not HL7"), Fault.MESSAGE, None),
    ],
)
def test_the_worker_reads_the_flags(
    error: inference_errors.RadgptError, fault: Fault, dependency: str | None
) -> None:
    classified = classify(error)
    assert (classified.fault, classified.dependency) == (fault, dependency)
    assert error.infrastructure == (fault is Fault.INFRASTRUCTURE)
    if fault is Fault.TRANSIENT:
        assert error.retriable
    if fault is Fault.MESSAGE:
        assert not error.retriable


def test_a_new_error_needs_no_special_case_anywhere() -> None:
    class SinkDown(integration_errors.PublishError):
        infrastructure = True
        dependency = "broker"

    assert classify(SinkDown("FHIR server refused")).fault is Fault.INFRASTRUCTURE
    assert classify(ValueError("a bug")).fault is Fault.MESSAGE
