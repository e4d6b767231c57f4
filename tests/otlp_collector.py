"""A minimal OTLP/HTTP collector for tests: records every span and metric exported to it (protobuf decoded)."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    instance: str
    name: str
    attributes: dict[str, Any]


class Collector:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.metric_bodies: list[bytes] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with owner._lock:
                    if self.path == "/v1/traces":
                        owner.bodies.append(body)
                    elif self.path == "/v1/metrics":
                        owner.metric_bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def env(self, metrics: bool = False) -> dict[str, str]:
        """OTEL_* variables that make a process export its spans (and metrics) here, every 200 ms."""
        out = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.endpoint,
               "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "200"}
        if metrics:
            out.update({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "200",
                        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": self.endpoint.replace("/v1/traces", "/v1/metrics")})
        return out

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Metric name -> its data points (attributes, and ``value`` for sums / ``count`` for histograms)."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        with self._lock:
            bodies = list(self.metric_bodies)
        out: dict[str, list[dict[str, Any]]] = {}
        for body in bodies:
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        for dp in getattr(m, kind).data_points:
                            point = {a.key: _value(a.value) for a in dp.attributes}
                            if kind == "sum":
                                point["value"] = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                            elif kind == "histogram":
                                point["count"] = dp.count
                            out.setdefault(m.name, []).append(point)
        return out

    def spans(self) -> list[ExportedSpan]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        with self._lock:
            bodies = list(self.bodies)
        out = []
        for body in bodies:
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                res = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        out.append(ExportedSpan(res.get("service.name", ""), res.get("service.instance.id", ""),
                                                sp.name, {a.key: _value(a.value) for a in sp.attributes}))
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None
