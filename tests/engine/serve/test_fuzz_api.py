"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, no 5xx.

Valid and invalid bodies, paths and queries are generated for every operation except the endpless MJPEG
stream; prompts land on a live source (stand-in stages), so accepted ones really run.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from engine.serve.app import create_app
from tests.engine.serve.conftest import make_service, wait_for

CALLS: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_service(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder), "fps": 25}],
                           limits={"frames_held": 8, "objects_per_source": 4, "request_bytes": 50_000,
                                   "prompts_per_second": 1000, "prompt_burst": 1000},
                           server={"allowed_hosts": ["testserver", "localhost", "127.0.0.1"]})  # its test client's
    service.start()
    wait_for(lambda: service.sources["cam"].session.tracked >= 2, what="frames tracked")
    yield service
    service.stop()
    print(f"\nAPI fuzz: {sum(CALLS.values())} requests; by status: {dict(sorted(CALLS.items()))}")


@pytest.fixture(scope="module")
def api_schema(fuzz_service):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_service)).exclude(path_regex="mjpeg")


def test_no_request_gets_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for op in operations:
        _fuzz(op)


def _fuzz(op) -> None:
    """Every generated case, and the same case on the real source (random ids are mostly 404s)."""

    @given(case=op.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case):
        attempts = [case]
        if case.path_parameters and "source_id" in case.path_parameters:
            attempts.append(op.Case(method=case.method, path_parameters={**case.path_parameters, "source_id": "cam"},
                                    query=case.query, body=case.body, headers=case.headers))
        for c in attempts:
            response = c.call()
            CALLS[response.status_code] += 1
            assert response.status_code < 500, (f"{c.method} {c.formatted_path} {c.body!r} -> "
                                                f"{response.status_code}: {response.text}")

    call()
