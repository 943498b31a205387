"""The whole API fuzzed from its own OpenAPI document with schemathesis.

Every operation the document lists (whoever added it) is called with generated
parameters and bodies on the served app (its WSGI callable, through the whole
request stack), signed in with a token, with a spec, a job and its log present. No
answer may be a 5xx, and every answer must match the document: a status it lists, a
body of the schema it gives. Valid and invalid input alike. Fixed seed (derandomized), a bounded number of examples
per operation. scripts/test runs it on SQLite, then on PostgreSQL.
"""
import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.routes import OPENAPI_FILE
from app.extensions import db
from app.models import LogChunk
from app.specs.service import create_spec

EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def operation_labels():
    """'GET /specs', ... of the document as it is now (read once, to name the tests).
    The document's own URL is left out, as schemathesis leaves it out of a schema it
    loaded from there (tests/test_api.py reads it)."""
    document = schemathesis.openapi.from_path(str(OPENAPI_FILE))
    labels = [result.ok().label for result in document.get_all_operations()]
    return [label for label in labels if label != "GET /openapi.yaml"]


@pytest.fixture
def served_api(app, queued_rq_jobs):
    """The document, bound to the app's WSGI callable, with data to reach."""
    outcome = create_spec({"name": "demo", "base_image": "debian:bookworm", "apt": "curl", "pip": "requests>=2"})
    db.session.add_all(LogChunk(job_id=outcome.job.id, seq=seq, text=f"STEP {seq + 1}/2: RUN\n") for seq in range(2))
    db.session.commit()
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.yaml", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", operation_labels())
def test_the_api_answers_as_documented_and_never_a_5xx(served_api, api_token, label, mode):
    operation = next(result.ok() for result in served_api.get_all_operations() if result.ok().label == label)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        calls.append(case.call_and_validate(headers={"Authorization": f"Bearer {api_token}"}, checks=CHECKS))

    calls = []
    call()
    assert len(calls) >= 10  # examples really ran
