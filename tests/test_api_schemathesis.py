"""Schemathesis over the whole OpenAPI document of the REST API (issue 13, items 5 and 6), on
both backends: every operation fuzzed from its schema, then stateful runs following the
document's links (create → read/update/move/delete). Checks: no 5xx for any input, and every
answer conforms to the document (status declared, body matching its schema).

Bounded for CI: a fixed seed (the same cases every run) and one random seed per run (printed
by Hypothesis on a failure), a few examples per operation. The run uses the WSGI app in
process, authenticated with a write key.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.admin_world import BACKENDS
from tests.api_world import API, ApiWorld, make_api_world

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
FIXED_SEED = 20261130
RANDOM_SEED = random.SystemRandom().randrange(2**32)
EXAMPLES = 5
COMMON = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture(params=BACKENDS)
def fuzz_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    """A fresh API world per backend."""
    yield make_api_world(tmp_path, request.param, request)


@pytest.fixture
def api_schema(fuzz_world: ApiWorld) -> Any:
    """The document, loaded from the running app."""
    return schemathesis.openapi.from_wsgi(API + "/openapi.json", fuzz_world.app)


def _operations(api_schema: Any) -> list[Any]:
    found = [result.ok() for result in api_schema.get_all_operations()]
    assert len(found) == 29
    return found


@pytest.mark.parametrize("which", ["fixed", "random"])
def test_every_operation(fuzz_world: ApiWorld, api_schema: Any, which: str) -> None:
    headers = fuzz_world.headers()
    chosen = FIXED_SEED if which == "fixed" else RANDOM_SEED
    for operation in _operations(api_schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @COMMON
            @seed(chosen)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except Exception as exc:
                exc.add_note(f"{operation.label} ({mode.value}, seed {chosen})")
                raise


@pytest.mark.parametrize("which", ["fixed", "random"])
def test_stateful_links(fuzz_world: ApiWorld, api_schema: Any, which: str) -> None:
    headers = fuzz_world.headers()

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    run = settings(
        max_examples=5,
        stateful_step_count=6,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=which == "fixed",
    )
    Workflow.run(settings=run)
