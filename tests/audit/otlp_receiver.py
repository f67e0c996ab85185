"""A tiny OTLP/HTTP receiver for tests: `otlp_receiver.py OUT.jsonl`.

Accepts POST /v1/traces and /v1/logs (protobuf, optionally gzip/deflate), decodes them with
`opentelemetry.proto`, and appends one JSON line per span or log record to OUT.jsonl. Prints
the port it listens on (127.0.0.1, chosen by the OS) as its first line of stdout.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_write_lock = threading.Lock()


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def traces(body: bytes) -> tuple[list[dict[str, Any]], bytes]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    {
                        "signal": "span",
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "scope": ss.scope.name,
                        "attributes": attributes(span.attributes),
                        "resource": resource,
                    }
                )
    return out, ExportTraceServiceResponse().SerializeToString()


def logs(body: bytes) -> tuple[list[dict[str, Any]], bytes]:
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    out = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                out.append(
                    {
                        "signal": "log",
                        "body": value(record.body),
                        "severity_text": record.severity_text,
                        "event_name": record.event_name,
                        "trace_id": record.trace_id.hex(),
                        "span_id": record.span_id.hex(),
                        "time_unix_nano": record.time_unix_nano,
                        "scope": sl.scope.name,
                        "attributes": attributes(record.attributes),
                        "resource": resource,
                    }
                )
    return out, ExportLogsServiceResponse().SerializeToString()


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        encoding = (self.headers.get("content-encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        decoders = {"/v1/traces": traces, "/v1/logs": logs}
        decode = decoders.get(self.path)
        if decode is None:
            self.send_error(404)
            return
        items, reply = decode(body)
        with _write_lock, open(self.server.out_path, "a", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps({"path": self.path, **item}) + "\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    out_path: str


def main() -> None:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.out_path = sys.argv[1]
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
