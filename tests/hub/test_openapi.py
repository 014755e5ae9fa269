"""The HTTP API's OpenAPI 3.1 contract (hub/openapi.py): the copy in docs/ is the one the
hub serves, and schemathesis, driving a running hub on 127.0.0.1 with cases generated from
the document (signed as a registrar, as a plain unit, or with whatever Authorization it
made up), finds no server error and no response the document does not allow."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from client.identity import UnitIdentity
from hub.app import RunningHub
from hub.openapi import document
from tests.conftest import Keys

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
#: generated cases per API operation (six operations)
EXAMPLES = 120
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


def test_docs_copy_is_what_the_hub_serves():
    """docs/openapi.json is written by `python -m hub.openapi > docs/openapi.json`."""
    assert DOCS.read_text() == json.dumps(document(), indent=2) + "\n"


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def running_hub(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    """A hub on its own event loop in a thread, so that schemathesis (synchronous, over
    requests) can call it from the test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    hub = RunningHub(keys.config(tmp_path_factory.mktemp("openapi") / "hub.db"))

    async def start() -> None:
        await hub.start()
        hub.hub.preload([u.signed for u in keys.units.values()])

    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield hub
    finally:
        asyncio.run_coroutine_threadsafe(hub.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_the_hub_serves_the_document(running_hub):
    got = requests.get(f"{running_hub.http}/v1/openapi.json", timeout=10)
    assert got.status_code == 200
    assert got.json() == document()


def _send(session: requests.Session, case: Any, base_url: str,
          signer: UnitIdentity | None) -> requests.Response:
    """Send ``case`` as schemathesis made it, signed by ``signer`` (None: as generated)."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    prepared = session.prepare_request(requests.Request(**kwargs))
    if signer is not None:
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        prepared.headers.update(signer.sign_request(prepared.method or "GET",
                                                    prepared.path_url, body,
                                                    at=int(time.time()), bring=True))
    return session.send(prepared, timeout=10)


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(running_hub, keys):
    schema = schemathesis.openapi.from_dict(document())
    signers: list[UnitIdentity | None] = [keys["OCU-BB"], keys["JM-CUSTOMS"], None]
    statuses: Counter[tuple[str, int]] = Counter()
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6

    def exercise(operation: Any) -> None:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), signer=st.sampled_from(signers))
        def run(case: Any, signer: UnitIdentity | None) -> None:
            response = _send(session, case, running_hub.http, signer)
            statuses[operation.label, response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        run()

    for operation in operations:
        exercise(operation)
    total = sum(statuses.values())
    print(f"\nschemathesis: {total} cases, statuses {sorted(statuses.items())}")
    assert total >= 6 * EXAMPLES // 2
    assert not [s for (_, s) in statuses if s >= 500]
    # the cases reached the API's answers, not only its refusals
    assert {s for (_, s) in statuses} >= {200, 401, 404}
