"""Which JetStream API errors the store tries again (hub/store/jetstream.py ``_retryable``):
the cluster settling is worth waiting for, a refusal is not. CI saw a hub node refuse to
start with 10005 while a server of a new cluster was not yet counted by the meta leader."""

from __future__ import annotations

import nats.js.errors as jse
import pytest

from hub.store.jetstream import _retryable


@pytest.mark.parametrize(("error", "again"), [
    (jse.BadRequestError(code=400, err_code=10005,
                         description="no suitable peers for placement, peer offline"), True),
    (jse.ServiceUnavailableError(code=503, description="JetStream system temporarily "
                                 "unavailable"), True),
    (TimeoutError(), True),
    (jse.BadRequestError(code=400, err_code=10071, description="wrong last sequence: 3"),
     False),
    (jse.BadRequestError(code=400, err_code=10164, description="wrong last sequence"), False),
    (jse.NotFoundError(code=404, err_code=10059, description="stream not found"), False),
])
def test_settling_is_tried_again_and_refusals_are_not(error, again):
    assert _retryable(error) is again
