# ruff: noqa: F811 - fixtures are imported from web_support by name
"""Schemathesis fuzzing of /api/v1, authenticated: no 5xx, and every answer matches the OpenAPI document.

Bounded and repeatable: a fixed number of examples per operation and a
derandomised Hypothesis, so a failure reproduces. The connection tests run too:
the hosts the fuzzer invents do not resolve, which must come back as a failed
"dns" step, never as a 500.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.web_support import admin, web_app  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture
def api_schema(web_app, admin):
    loaded = schemathesis.openapi.from_asgi("/api/v1/openapi.json", web_app,
                                            headers={"Authorization": f"Bearer {admin}"})
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=6, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_match_the_schema_and_never_5xx(case, admin):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])
