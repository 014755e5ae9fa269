"""Sizes, rates, shapes and profiles: what is accepted, and clear errors for the rest."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from opshub.load.profile import load_profile
from opshub.load.spec import MAX_SIZE, MIN_SIZE, LoadOptions, Shape, parse_rate, parse_size
from protocol.errors import UsageError


def test_size_fixed_uniform_and_lognormal_stay_in_range() -> None:
    """Each size form samples within its bounds and within what a payload may be."""
    rng = random.Random(1)
    assert parse_size("1024").sample(rng) == 1024
    uniform = parse_size("512-4096")
    assert all(512 <= uniform.sample(rng) <= 4096 for _ in range(1000))
    lognormal = parse_size("lognormal:1024:0.5")
    sizes = sorted(lognormal.sample(rng) for _ in range(2001))
    assert all(MIN_SIZE <= s <= MAX_SIZE for s in sizes)
    assert 900 < sizes[1000] < 1150  # the median


@pytest.mark.parametrize(("text", "says"), [
    ("big", "is not a size: expected N (bytes), A-B (uniform) or lognormal:MEDIAN:SIGMA"),
    ("8", "outside 16..262144 bytes"),
    ("4096-512", "empty range"),
    ("lognormal:1024", "is not lognormal:MEDIAN:SIGMA"),
    ("lognormal:1024:x", "sigma 'x' is not a number"),
])
def test_size_refused_with_reason(text: str, says: str) -> None:
    """A bad --size names the option and the value, and says what is accepted."""
    with pytest.raises(UsageError) as err:
        parse_size(text)
    assert err.value.message.startswith("--size: ")
    assert says in err.value.message


def test_rate_constant_and_stepped() -> None:
    """A stepped rate lists its steps (stop included); a constant one climbs R, 2R ..."""
    assert parse_rate("100:500:100").rates == (100, 200, 300, 400, 500)
    assert parse_rate("250").ladder()[:3] == (250, 500, 750)


@pytest.mark.parametrize(("text", "says"), [
    ("fast", "is not a number"), ("100:50:10", "stops below its start"),
    ("0", "must be above 0"), ("1:2", "expected R"), ("1:10000:1", "at most 64"),
])
def test_rate_refused_with_reason(text: str, says: str) -> None:
    """A bad --rate names the value and what is wrong with it."""
    with pytest.raises(UsageError, match=says):
        parse_rate(text)


def test_shape_needs_a_rate_or_a_window() -> None:
    """A shape is open loop (rate) or closed loop (window), never both."""
    with pytest.raises(UsageError, match="--rate: give a rate"):
        Shape(window=4, where="--")
    with pytest.raises(UsageError, match="--directed: directed messages go to a subscriber"):
        Shape(subscribers=0, directed=0.5, where="--")


def test_options_step_through_every_shape() -> None:
    """Stepped shapes step together; a shape with fewer steps holds its last rate."""
    opts = LoadOptions(shapes=(Shape(name="a", rate=parse_rate("10:30:10")),
                               Shape(name="b", rate=parse_rate("5")),
                               Shape(name="c", rate=None, window=8)), step_seconds=2)
    assert (opts.steps, opts.planned_seconds) == (3, 6)
    assert opts.rates_at(2) == {"a": 30, "b": 5, "c": None}


def test_profile_read(tmp_path: Path) -> None:
    """A profile's shapes come with their defaults filled in."""
    path = tmp_path / "p.yaml"
    path.write_text("shapes:\n  - operations: 2\n    rate: 50:100:50\n    size: 100-200\n"
                    "  - name: closed\n    window: 8\n    subscribers: 0\n")
    first, second = load_profile(path)
    assert (first.name, first.operations, first.subscribers, first.rate) == (
        "shape-1", 2, 30, parse_rate("50:100:50"))
    assert (second.window, second.rate, second.subscribers) == (8, None, 0)


@pytest.mark.parametrize(("text", "says"), [
    ("- 1\n", "expected a mapping with a 'shapes' list"),
    ("shapes: []\n", "shapes: expected a list of one or more shapes"),
    ("shapes:\n  - rate: 10\n    colour: red\n", "shapes[0].colour: unknown field"),
    ("shapes:\n  - rate: fast\n", "shapes[0].rate: rate 'fast' is not a number"),
    ("shapes:\n  - {}\n  - size: huge\n", "shapes[1].size: 'huge' is not a size"),
    ("shapes:\n  - operations: 0\n", "shapes[0].operations: expected an integer >= 1"),
    ("shapes:\n  - {name: a}\n  - {name: a}\n", "shapes[1].name: 'a' is used twice"),
    ("shapes:\n  - rate: 10\n    window: 2\n", "shapes[0].rate: give a rate"),
    ("shapes: [\n", "not YAML at line"),
])
def test_profile_refused_naming_the_field(tmp_path: Path, text: str, says: str) -> None:
    """Every problem of a profile names the file and the field."""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        load_profile(path)
    assert err.value.message.startswith(f"{path}: "), err.value.message
    assert says in err.value.message
