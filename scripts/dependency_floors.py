"""The declared dependency floors, as pip constraints, and a check that an environment runs on them.

``make test-lowest`` installs Airflow, then the provider with ``uv pip install --resolution
lowest-direct`` and these constraints, so each floor is the version really installed, not only
one the metadata allows: ``lowest-direct`` alone lets a newer transitive dependency (the newest
common-io provider, say) lift a floor that then is never exercised. Where the installed Airflow
line itself requires more than our floor (Airflow 3 wants pendulum>=3.1), the line's floor is the
lowest a user can have there, and that is what gets installed and checked.

    python scripts/dependency_floors.py constraints [--skip NAME ...]   # print name==floor lines
    python scripts/dependency_floors.py check [--skip NAME ...]         # installed == floor, or exit 1
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
AIRFLOW_DISTRIBUTIONS = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")


def declared_floors() -> dict[str, Version]:
    """Each runtime dependency's ``>=`` bound (every one must have exactly one)."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    result: dict[str, Version] = {}
    for line in dependencies:
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if len(lower) != 1:
            raise SystemExit(f"{line!r} in pyproject.toml needs exactly one '>=' floor")
        result[canonicalize_name(requirement.name)] = lower[0]
    return result


def airflow_floors() -> dict[str, Version]:
    """The ``>=`` bounds the installed Airflow distributions put on the same names."""
    result: dict[str, Version] = {}
    for distribution in AIRFLOW_DISTRIBUTIONS:
        try:
            lines = requires(distribution) or []
        except PackageNotFoundError:
            continue
        for line in lines:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            for spec in requirement.specifier:
                if spec.operator == ">=":
                    result[name] = max(result.get(name, Version("0")), Version(spec.version))
    return result


def line_floors(skip: set[str]) -> dict[str, tuple[Version, str]]:
    """name -> (lowest version this Airflow line allows, why)."""
    theirs = airflow_floors()
    result = {}
    for name, ours in declared_floors().items():
        if name in skip:
            continue
        if theirs.get(name, Version("0")) > ours:
            result[name] = (theirs[name], f"declared {ours}, this Airflow line requires >={theirs[name]}")
        else:
            result[name] = (ours, "declared floor")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["constraints", "check"])
    parser.add_argument("--skip", action="append", default=[], help="a dependency the line pins itself")
    args = parser.parse_args()
    floors = line_floors({canonicalize_name(name) for name in args.skip})
    if args.command == "constraints":
        print("\n".join(f"{name}=={floor}" for name, (floor, _) in floors.items()))
        return 0
    wrong = 0
    for name, (floor, why) in floors.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        ok = installed != "missing" and Version(installed) == floor
        wrong += not ok
        print(f"{'ok ' if ok else 'BAD'} {name:42} installed {installed:9} ({why})")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
