"""OpenTelemetry: one span per kernel operation, plus operation counters and latency histograms.

memos only uses the OpenTelemetry *API*; with no SDK configured the spans are no-ops and cost almost
nothing. :func:`configure_from_env` installs the SDK from the standard ``OTEL_*`` variables
(``OTEL_TRACES_EXPORTER=console|otlp``, ``OTEL_SERVICE_NAME`` ...) for the CLI, the server and each
cluster kernel worker (``memos up`` hands its ``OTEL_*`` variables to the workers it starts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_tracer: Any = None
_ops_counter: Any = None
_latency: Any = None


def _instruments() -> tuple[Any, Any, Any]:
    global _tracer, _ops_counter, _latency
    if _tracer is None:
        from opentelemetry import metrics, trace

        _tracer = trace.get_tracer("memos")
        meter = metrics.get_meter("memos")
        _ops_counter = meter.create_counter("memos.operations", description="kernel operations")
        _latency = meter.create_histogram("memos.operation.duration", unit="ms",
                                          description="kernel operation latency")
    return _tracer, _ops_counter, _latency


def reset_instruments() -> None:
    """Drop cached instruments (tests that install a fresh TracerProvider)."""
    global _tracer, _ops_counter, _latency
    _tracer = _ops_counter = _latency = None


@contextmanager
def span(op: str, *, cube: str | None = None, kind: str | None = None, items: int | None = None,
         **attrs: Any) -> Iterator[Any]:
    tracer, counter, latency = _instruments()
    attributes: dict[str, Any] = {"memos.op": op}
    if cube is not None:
        attributes["memos.cube"] = cube
    if kind is not None:
        attributes["memos.kind"] = kind
    if items is not None:
        attributes["memos.items"] = items
    for k, v in attrs.items():
        if v is not None:
            attributes[f"memos.{k}"] = v if isinstance(v, (str, bool, int, float)) else str(v)
    start = time.perf_counter()
    status = "ok"
    with tracer.start_as_current_span(f"memos.{op}", attributes=attributes) as sp:
        try:
            yield sp
        except BaseException as exc:
            status = type(exc).__name__
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            sp.set_attribute("memos.latency_ms", ms)
            labels = {"op": op, "status": status}
            counter.add(1, labels)
            latency.record(ms, labels)


def otel_env() -> dict[str, str]:
    """The ``OTEL_*`` variables of this process (what a cluster worker needs to export like it)."""
    return {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}


def configure_from_env(service: str = "memos", instance: str | None = None) -> bool:
    """Install the OpenTelemetry SDK for what the environment asks: ``OTEL_TRACES_EXPORTER`` and
    ``OTEL_METRICS_EXPORTER`` (``console`` or ``otlp``, OTLP over HTTP; the SDK reads the other ``OTEL_*``
    variables itself). True if anything was installed.

    ``service``: the ``service.name`` unless ``OTEL_SERVICE_NAME`` sets one; ``instance``: the
    ``service.instance.id`` (a cluster worker's id)."""
    traces, metrics_ = _exporter("OTEL_TRACES_EXPORTER"), _exporter("OTEL_METRICS_EXPORTER")
    if not traces and not metrics_:
        return False
    from opentelemetry.sdk.resources import Resource

    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}
    if instance is not None:
        attrs["service.instance.id"] = instance
    resource = Resource.create(attrs)
    if traces:
        _install_traces(traces, resource)
    if metrics_:
        _install_metrics(metrics_, resource)
    reset_instruments()
    return True


def _exporter(variable: str) -> str:
    """``console``, ``otlp`` or ``""`` (none) from ``variable``; an unknown value is warned about and ignored."""
    value = os.environ.get(variable, "").strip().lower()
    if value in ("", "none"):
        return ""
    if value not in ("console", "otlp"):
        import logging

        logging.getLogger("memos").warning("%s=%r is not supported (console, otlp, none): ignored", variable, value)
        return ""
    return value


def _otlp(module: str, name: str) -> Any:
    try:
        mod = __import__(f"opentelemetry.exporter.otlp.proto.http.{module}", fromlist=[name])
    except ImportError as exc:
        from memos.errors import MissingExtra

        raise MissingExtra("server", "opentelemetry-exporter-otlp") from exc
    return getattr(mod, name)


def _install_traces(exporter: str, resource: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=resource)
    out = ConsoleSpanExporter() if exporter == "console" else _otlp("trace_exporter", "OTLPSpanExporter")()
    provider.add_span_processor(BatchSpanProcessor(out))
    trace.set_tracer_provider(provider)


def _install_metrics(exporter: str, resource: Any) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    out = ConsoleMetricExporter() if exporter == "console" else _otlp("metric_exporter", "OTLPMetricExporter")()
    # export interval: OTEL_METRIC_EXPORT_INTERVAL (ms, SDK default 60 s); the last values go out at exit
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(out)]))
