"""Cross-cutting concerns of the node: Prometheus metrics and request logging, in a gRPC
server interceptor (never in the handlers), and the `/metrics` HTTP endpoint.

Metrics (one registry per node, so several nodes can run in one process):
- `ccs_grpc_requests_total{method,code}`: every gRPC call of every listener by full method
  (`ccs.v1.Charging/Charge`) and final status (`OK`, `INVALID_ARGUMENT`, ...); a stream is
  counted when it ends (`CANCELLED` when the client left); a call to a service the listener
  does not serve is `method="(not served)"`, `code="UNIMPLEMENTED"`;
- `ccs_charge_requests_total{type,result}`: each answered Charge by request type and its
  Diameter-style result code (a Charge refused with a gRPC status has no result code and is
  only in the first counter);
- `ccs_request_seconds{method}`: latency histogram of unary calls, handler time in the node;
- `ccs_redis_round_trips_total`: Redis round trips of the credit-control engine;
- `ccs_open_reservations`: holds of open sessions (entries of the expiry index);
- `ccs_sweeper_released_total`: reservations the node's sweeper released.
"""

from __future__ import annotations

import logging
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("ccs.requests")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
NOT_SERVED = "(not served)"  # the method label of calls to what this listener does not serve
_TYPES = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATE", 4: "EVENT"}  # else UNSPECIFIED
# statuses that are the caller's doing: logged at INFO; any other non-OK status at WARNING
_CALLER_STATUSES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS",
                              "FAILED_PRECONDITION", "CANCELLED", "DEADLINE_EXCEEDED",
                              "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"})


class NodeMetrics:
    """The node's metrics in a registry of its own. `charger`, `redis_client` and
    `sweeper_stats` (each optional) are read when scraped."""

    def __init__(self, charger=None, redis_client=None, sweeper_stats=None):
        self.registry = CollectorRegistry()
        self.grpc_requests = Counter("ccs_grpc_requests", "gRPC calls by method and status",
                                     ["method", "code"], registry=self.registry)
        self.charge_requests = Counter("ccs_charge_requests",
                                       "Charge requests by type and result code",
                                       ["type", "result"], registry=self.registry)
        self.latency = Histogram("ccs_request_seconds", "gRPC unary call latency", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_Collected(charger, redis_client, sweeper_stats))


class _Collected:
    """Figures read when scraped: the engine's round trips, open holds, sweeper releases."""

    def __init__(self, charger, redis_client, sweeper_stats):
        self.charger = charger
        self.r = redis_client
        self.sweeper_stats = sweeper_stats

    def collect(self):
        if self.charger is not None:
            c = CounterMetricFamily("ccs_redis_round_trips", "Redis round trips of Charge")
            c.add_metric([], self.charger.round_trips)
            yield c
        if self.sweeper_stats is not None:
            c = CounterMetricFamily("ccs_sweeper_released",
                                    "reservations the node's sweeper released")
            c.add_metric([], self.sweeper_stats.released)
            yield c
        if self.r is not None:
            from accounts.keys import EXPIRY_INDEX

            try:
                n = self.r.zcard(EXPIRY_INDEX)
            except Exception as exc:  # noqa: BLE001 - a scrape during an outage shows no figure
                log.warning("ccs_open_reservations not read: %s", exc)
                return
            g = GaugeMetricFamily("ccs_open_reservations", "holds of open sessions")
            g.add_metric([], n)
            yield g


def _status_name(context, default: str) -> str:
    """The status the handler set (abort or set_code), else CANCELLED when the client is
    gone (a read of a cancelled request stream raises), else `default`."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return default if context.is_active() else "CANCELLED"


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every call by method and status, times unary calls, counts each Charge by
    type and result code, and logs what did not go well."""

    def __init__(self, metrics: NodeMetrics):
        self.m = metrics
        self._children: dict = {}  # (metric, labels) -> its child: labels() once per label set

    def _child(self, metric, *labels):
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:  # no such service or method here: grpc answers UNIMPLEMENTED
            # counted under one label: the method name is the client's choice (unbounded)
            self.m.grpc_requests.labels(NOT_SERVED, "UNIMPLEMENTED").inc()
            log.info("%.200s: UNIMPLEMENTED (not served on this listener)",
                     handler_call_details.method)
            return None
        method = handler_call_details.method.lstrip("/")
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _done(self, method: str, code: str, context) -> None:
        self._child(self.m.grpc_requests, method, code).inc()
        if code != "OK":
            level = logging.INFO if code in _CALLER_STATUSES else logging.WARNING
            details = context.details() or b""
            if isinstance(details, bytes):
                details = details.decode("utf-8", "replace")
            log.log(level, "%s: %s %.300s", method, code, details)

    def _unary(self, method: str, inner):
        latency = self.m.latency.labels(method)
        charge = method == "ccs.v1.Charging/Charge"
        charge_requests = self.m.charge_requests

        def call(request, context):
            t0 = time.perf_counter()
            code = "UNKNOWN"  # an exception without a status set is UNKNOWN to the client
            try:
                response = inner(request, context)
                code = _status_name(context, "OK")
            except Exception:
                code = _status_name(context, "UNKNOWN")
                raise
            finally:
                latency.observe(time.perf_counter() - t0)
                self._done(method, code, context)
            if charge and code == "OK":
                self._child(charge_requests, _TYPES.get(request.request_type, "UNSPECIFIED"),
                            str(response.result_code)).inc()
                if response.result_code != 2001:
                    log.debug("Charge %s/%d: %d %s", request.session_id,
                              request.request_number, response.result_code,
                              response.error_message)
            return response

        return call

    def _stream(self, method: str, inner):
        def call(request, context):
            code = "UNKNOWN"
            try:
                yield from inner(request, context)
                code = _status_name(context, "OK")
            except GeneratorExit:  # the client went away (or the server stops)
                code = "CANCELLED"
                raise
            except Exception:
                code = _status_name(context, "UNKNOWN")
                raise
            finally:
                self._done(method, code, context)

        return call


def serve_metrics(listen: str, metrics: NodeMetrics):
    """Serve `/metrics` (plain HTTP) on HOST:PORT (port 0: a free one); returns
    (server, port). `server.shutdown()` stops it."""
    return _serve_registry(listen, metrics.registry)


def _serve_registry(listen: str, registry):
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1",
                                        registry=registry)
    return server, server.server_address[1]


class MergedMetrics:
    """The `/metrics` of `ccs serve --workers N`: each worker's own page (on a private
    loopback port, `ports()`) read at scrape time and merged: counters and histograms summed
    by name and labels, gauges the largest (`ccs_open_reservations` is the same Redis read by
    every worker), `_created` the earliest. A worker that does not answer is left out of that
    scrape (a restarted worker starts its counters at 0: Prometheus sees a counter reset)."""

    def __init__(self, ports, timeout_s: float = 2.0):
        self.ports = ports
        self.timeout_s = timeout_s

    def pages(self) -> list[str]:
        import urllib.request

        out = []
        for port in self.ports():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=self.timeout_s) as page:
                    out.append(page.read().decode())
            except OSError as exc:  # a worker that just died or is starting
                log.info("worker metrics on port %d not read: %s", port, exc)
        return out

    def collect(self):
        from prometheus_client.metrics_core import Metric
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, tuple[Metric, dict]] = {}
        for page in self.pages():
            for fam in text_string_to_metric_families(page):
                metric, values = families.setdefault(
                    fam.name, (Metric(fam.name, fam.documentation, fam.type), {}))
                for s in fam.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    old = values.get(key)
                    if old is None:
                        values[key] = s.value
                    elif s.name.endswith("_created"):
                        values[key] = min(old, s.value)
                    elif fam.type == "gauge":
                        values[key] = max(old, s.value)
                    else:
                        values[key] = old + s.value
        for metric, values in families.values():
            for (name, labels), value in values.items():
                metric.add_sample(name, dict(labels), value)
            yield metric


def serve_merged_metrics(listen: str, ports):
    """Serve the workers' merged `/metrics` on HOST:PORT; returns (server, port)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedMetrics(ports))
    return _serve_registry(listen, registry)
