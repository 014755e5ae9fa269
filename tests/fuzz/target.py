"""Target: one fuzz target (a strategy and the check it feeds), and the suite's settings.

The same Target runs in two places: the test suite, bounded by ``suite_examples`` under
the ``fuzz-suite`` profile, and ``scripts/fuzz``, which runs it in batches for as long
as it is given. A check raises AssertionError (or lets an exception escape) on a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# No deadline and no "too slow" check: the machine is shared (as tests/conftest.py's
# "shared-machine" profile, which this one repeats so that scripts/fuzz, which loads no
# conftest, gets the same); the blob printed with a failure reproduces it
# (@reproduce_failure on the suite test of the same target).
settings.register_profile(
    "fuzz-suite",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SUITE = settings.get_profile("fuzz-suite")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    #: examples per suite run (the whole of tests/fuzz/ stays under ~30 s)
    suite_examples: int
    #: the suite test that runs it (where a reproduction blob goes)
    suite_test: str
    #: share of scripts/fuzz's time, relative to the other targets
    weight: int = 1

    def suite_settings(self) -> settings:
        return settings(SUITE, max_examples=self.suite_examples)
