"""OperationAdmin in memory: the OCU's membership chain, before anything is sent."""

from __future__ import annotations

import time

import pytest

from client.identity import Authority, UnitSpec
from client.membership import OperationAdmin
from protocol.errors import UsageError


def test_membership_change_before_the_creation_is_accepted_is_usage_error() -> None:
    """Signing a change of an operation whose creation the hub has not accepted is a
    misuse of the API (UsageError), not a crash of some other kind."""
    authority = Authority.generate()
    ocu = authority.enroll(UnitSpec("OCU-BB", "BB", "customs", "ocu"), now=int(time.time()))
    admin = OperationAdmin(ocu, "OP-M", now=time.time)
    with pytest.raises(UsageError, match="OP-M"):
        admin.change(remove=["JM-CUSTOMS"])
