"""deploy/constraints.txt pins every library photoq.pyz carries, so a release is reproducible: a dependency added to
pyproject.toml (or a new transitive one) without `make constraints` fails here, not in a release months later."""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CONSTRAINTS = Path(__file__).resolve().parent.parent / "deploy" / "constraints.txt"


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not an exact pin: {line!r}"
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def runtime_closure(name: str) -> set[str]:
    """photoq's runtime dependencies and theirs, as installed here (extras such as photoq[test] left out)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for text in distribution(todo.pop()).requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = canonicalize_name(requirement.name)
            if key not in seen:
                seen.add(key)
                todo.append(requirement.name)
    return seen


def test_every_runtime_dependency_is_pinned_exactly():
    pins = pinned()
    missing = runtime_closure("photoq") - set(pins)
    assert not missing, f"not in deploy/constraints.txt (run `make constraints`): {sorted(missing)}"


def test_the_pins_satisfy_pyproject():
    pins = pinned()
    for text in distribution("photoq").requires or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{requirement} in pyproject.toml, but deploy/constraints.txt pins {version} (run `make constraints`)"
