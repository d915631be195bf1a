"""What a trace says of a request: root span attributes (code, purpose, processing activity,
number of subjects), the service in the resource, the caller's tracestate passed on, and OTLP
URLs that never lose spans silently."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import __version__
from gateway.cli.main import app as cli_app
from gateway.observability.tracing import build_tracer_provider, otlp_endpoint
from mocks import Registries
from tests.conftest import StartGateway
from tests.support import caller

QUERY = "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer opvang { modaliteit } } }"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def spans_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def root_spans(path: Path) -> list[dict[str, Any]]:
    return [s for s in spans_of(path) if s["name"] == "POST /graphql"]


async def test_the_root_span_says_code_purpose_activity_and_subjects(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    export = tmp_path / "spans.jsonl"
    running = await start(traces=f"file:{export}")
    state = tmp_path / "state"
    who = caller(running, state, org="DTV", roles=["regievoerder"], purpose="TERUGKEER")
    subjects = [mock_registries.population.vnummer(i) for i in range(10, 13)]
    answer = await who.query(QUERY, {"v": subjects})
    assert answer.status == 200, answer.body
    wrong = caller(
        running,
        state,
        org="DTV",
        roles=["regievoerder"],
        purpose="TERUGKEER",
        activity="nvik-overlast",
    )
    refused = await wrong.query(QUERY, {"v": subjects})
    assert refused.status == 403
    anonymous = await running.gateway.handle(
        {"x-doelbinding": "TERUGKEER", "x-verwerking": "x"}, {"query": "{ __typename }"}
    )
    assert anonymous.status == 401
    assert running.gateway.tracer_provider.force_flush(10_000)

    first, second, third = (s["attributes"] for s in root_spans(export))
    assert first == {
        "ketenpoort.purpose": "TERUGKEER",
        "ketenpoort.processing_activity": who.activity,
        "ketenpoort.organisation": "DTV",
        "dpl.core.processing_activity_id": (
            "https://register.ketenpoort.example/verwerkingen/" + who.activity
        ),
        "ketenpoort.subjects": 3,
        "ketenpoort.code": "OK",
        # Answered by the plan's compiled builder, not by strawberry's execution.
        "ketenpoort.execution": "compiled",
    }
    assert second == {
        "ketenpoort.purpose": "TERUGKEER",
        "ketenpoort.processing_activity": "nvik-overlast",
        "ketenpoort.organisation": "DTV",
        "ketenpoort.subjects": 0,
        "ketenpoort.code": "PROCESSING_ACTIVITY_NOT_REGISTERED",
    }
    assert third == {
        "ketenpoort.purpose": "TERUGKEER",
        "ketenpoort.processing_activity": "x",
        "ketenpoort.subjects": 0,
        "ketenpoort.code": "UNAUTHENTICATED",
    }


async def test_spans_name_the_service_and_pass_the_tracestate_on(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    export = tmp_path / "spans.jsonl"
    running = await start(traces=f"file:{export}")
    who = caller(
        running, tmp_path / "state", org="DTV", roles=["regievoerder"], purpose="TERUGKEER"
    )
    subjects = [mock_registries.population.vnummer(20)]
    answer = await who.query(
        QUERY, {"v": subjects}, traceparent=TRACEPARENT, tracestate="ketenpartner=coa7,rojo=00f0"
    )
    assert answer.status == 200, answer.body
    assert running.gateway.tracer_provider.force_flush(10_000)
    spans = spans_of(export)
    assert spans
    for span in spans:
        resource = span["resource"]["attributes"]
        assert resource["service.name"] == "ketenpoort"
        assert resource["service.version"] == __version__
    (root,) = root_spans(export)
    # The SDK's JSON form of a TraceState.
    assert root["context"]["trace_state"] == str(
        ["{key=ketenpartner, value=coa7}", "{key=rojo, value=00f0}"]
    )
    asked = [call for mock in mock_registries.all for call in mock.served]
    assert asked, "no registry was asked"
    for call in asked:
        assert call.headers["traceparent"].split("-")[1] == TRACE_ID
        assert call.headers["tracestate"] == "ketenpartner=coa7,rojo=00f0"


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example", "https://otel.example/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("http://gw.example/otlp/v1/traces", "http://gw.example/otlp/v1/traces"),
    ],
)
def test_an_otlp_url_without_a_path_gets_v1_traces(given: str, endpoint: str) -> None:
    assert otlp_endpoint(given) == endpoint


@pytest.mark.parametrize("spec", ["otlp:collector:4318", "otlp:", "otlp:ftp://x", "jaeger:x"])
def test_a_traces_setting_that_cannot_export_refuses_the_start(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KETENPOORT_TRACES"):
        build_tracer_provider(spec)
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--traces", spec, "--port", "1"],
        env={"KETENPOORT_STATE": str(tmp_path / "state")},
    )
    assert result.exit_code == 2
    assert "KETENPOORT_TRACES" in result.stderr


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, int]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self.received.append((self.path, self.headers.get("content-type", ""), length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    received: list[tuple[str, str, int]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


async def test_spans_reach_an_otlp_collector_given_without_a_path(
    start: StartGateway,
    mock_registries: Registries,
    tmp_path: Path,
    collector: tuple[str, list[tuple[str, str, int]]],
) -> None:
    url, received = collector
    running = await start(traces=f"otlp:{url}")
    who = caller(
        running, tmp_path / "state", org="DTV", roles=["regievoerder"], purpose="TERUGKEER"
    )
    answer = await who.query(QUERY, {"v": [mock_registries.population.vnummer(30)]})
    assert answer.status == 200, answer.body
    assert running.gateway.tracer_provider.force_flush(10_000)
    assert received, "no span reached the collector"
    assert {path for path, _, _ in received} == {"/v1/traces"}
    assert all(kind == "application/x-protobuf" and size > 0 for _, kind, size in received)
