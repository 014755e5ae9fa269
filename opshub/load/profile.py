"""A load profile: several shapes of traffic run together, read from a YAML file.

The format (every field but ``shapes`` optional; defaults as for the command line)::

    # opshub load --profile mixed.yaml --duration 30
    shapes:
      - name: fanout            # letters, digits, '-' or '_'; default shape-1, shape-2 ...
        operations: 1           # operations of this shape, each a closed user group
        publishers: 1           # publishing units per operation
        subscribers: 30         # subscribed units per operation (0: none)
        rate: 2000              # messages/s per publisher, or START:STOP:STEP (stepped)
        size: 1024              # bytes: N, A-B (uniform) or lognormal:MEDIAN:SIGMA
        directed: 0.0           # share of messages sent to one member instead (0 to 1)
      - name: chatter
        operations: 20
        publishers: 2
        subscribers: 5
        window: 16              # closed loop: messages in flight per publisher, no rate
        size: lognormal:700:0.6

A shape has a ``rate`` or a ``window``, not both (neither: rate 1000). Stepped rates step
together (step k of every shape runs at once; a shape with fewer steps holds its last).
How long the profile runs is the command line's business (--duration, --step-seconds).

Nothing here runs; every problem is a UsageError naming the file and the field, e.g.
``mixed.yaml: shapes[1].rate: ...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from opshub.load.spec import RateSpec, Shape, parse_rate, parse_size
from protocol.errors import UsageError

SHAPE_FIELDS = ("name", "operations", "publishers", "subscribers", "rate", "window", "size",
                "directed")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
#: Units and operations a profile may ask for in total (each unit is a connection).
MAX_UNITS = 20_000


def load_profile(path: Path) -> list[Shape]:
    """The shapes of the profile at ``path``. Raises UsageError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read profile {path}: {(exc.strerror or str(exc)).lower()}"
                         ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}: not YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_profile(data, str(path))


def parse_profile(data: Any, source: str) -> list[Shape]:
    """The shapes of a parsed profile document. Raises UsageError naming ``source``."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping with a 'shapes' list at the top")
    unknown = sorted(set(map(str, data)) - {"shapes"})
    if unknown:
        raise UsageError(f"{source}: unknown field(s) {', '.join(unknown)} (a profile has "
                         f"'shapes' only)")
    shapes = data.get("shapes")
    if not isinstance(shapes, list) or not shapes:
        raise UsageError(f"{source}: shapes: expected a list of one or more shapes")
    out = [_shape(item, f"{source}: shapes[{i}].", i) for i, item in enumerate(shapes)]
    names = [s.name for s in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UsageError(f"{source}: shapes[{i}].name: {name!r} is used twice")
    units = sum(s.operations * (s.publishers + s.subscribers) for s in out)
    if units > MAX_UNITS:
        raise UsageError(f"{source}: the shapes ask for {units:,} units; at most {MAX_UNITS:,}")
    return out


def _shape(item: Any, where: str, index: int) -> Shape:
    if not isinstance(item, dict):
        raise UsageError(f"{where[:-1]}: expected a mapping of {', '.join(SHAPE_FIELDS)}")
    unknown = sorted(set(map(str, item)) - set(SHAPE_FIELDS))
    if unknown:
        raise UsageError(f"{where}{unknown[0]}: unknown field (a shape has "
                         f"{', '.join(SHAPE_FIELDS)})")
    name = item.get("name", f"shape-{index + 1}")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UsageError(f"{where}name: {name!r} is not a name (letters, digits, '-', '_')")
    rate: RateSpec | None = None
    window = item.get("window")
    if "rate" in item:
        if item["rate"] is None or isinstance(item["rate"], bool):
            raise UsageError(f"{where}rate: expected a number or START:STOP:STEP")
        rate = parse_rate(str(item["rate"]), f"{where}rate")
    elif window is None:
        rate = parse_rate("1000", f"{where}rate")
    size = item.get("size", 1024)
    if isinstance(size, bool) or not isinstance(size, int | str):
        raise UsageError(f"{where}size: expected N, A-B or lognormal:MEDIAN:SIGMA, "
                         f"got {size!r}")
    return Shape(name=name, operations=item.get("operations", 1),
                 publishers=item.get("publishers", 1),
                 subscribers=item.get("subscribers", 30), rate=rate, window=window,
                 directed=item.get("directed", 0.0), size=parse_size(str(size), f"{where}size"),
                 where=where)
