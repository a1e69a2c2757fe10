"""The public API, written out: a change to what users import is a change to this file.

Public is what a DAG author imports: the modules in :data:`PUBLIC_API`, each exporting exactly the
names listed. Every other module starts with an underscore, except Airflow's provider conventions
(:data:`CONVENTION_MODULES`). A public name is defined in a public module, or is one of the
deliberate re-exports in :data:`RE_EXPORTS` (a user-facing type kept in a private module).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "airflow_provider_flowservice"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

PUBLIC_API: dict[str, tuple[str, ...]] = {
    PACKAGE: ("__version__",),
    f"{PACKAGE}.assets": ("SCHEME", "dataset_asset", "dataset_uri", "flow_alias"),
    f"{PACKAGE}.exceptions": (
        "FlowServiceApiError",
        "FlowServiceAuthError",
        "FlowServiceConfigError",
        "FlowServiceError",
        "FlowServiceRetryError",
        "FlowServiceRunError",
        "FlowServiceTimeoutError",
    ),
    f"{PACKAGE}.hooks": (),
    f"{PACKAGE}.hooks.flow_service": (
        "FlowServiceAsyncHook",
        "FlowServiceConnectionSettings",
        "FlowServiceHook",
        "RetryPolicy",
    ),
    f"{PACKAGE}.links": (),
    f"{PACKAGE}.links.flow_service": ("RUN_URL_XCOM_KEY", "FlowServiceRunLink"),
    f"{PACKAGE}.models": ("ConnectionSpec", "CreatedRun", "Flow", "FlowConnection", "FlowRun", "RunError"),
    f"{PACKAGE}.operators": (),
    f"{PACKAGE}.operators.flow_service": ("FlowServiceCreateRunOperator",),
    f"{PACKAGE}.sensors": (),
    f"{PACKAGE}.sensors.flow_service": ("FlowServiceRunOutcomeError", "FlowServiceRunSensor"),
    f"{PACKAGE}.status": ("FlowRunStatus", "RunState"),
    f"{PACKAGE}.testing": ("DEFAULT_FLOW_ID", "FlowServiceEmulator", "RecordedRequest"),
    f"{PACKAGE}.testing.emulator": (
        "DEFAULT_FLOW_ID",
        "FAULT_KINDS",
        "FlowServiceEmulator",
        "RecordedRequest",
        "main",
    ),
    f"{PACKAGE}.testing.pytest_plugin": ("flow_service_conn", "flow_service_emulator"),
    f"{PACKAGE}.triggers": (),
    f"{PACKAGE}.triggers.flow_service": ("FlowServiceRunTrigger",),
}

#: (public module, name) -> the private module that defines it: user-facing types kept where they are used.
RE_EXPORTS: dict[tuple[str, str], str] = {
    # retry= of the hooks, the operator and the sensor
    (f"{PACKAGE}.hooks.flow_service", "RetryPolicy"): f"{PACKAGE}._retry",
    # what FlowServiceHook.settings returns
    (f"{PACKAGE}.hooks.flow_service", "FlowServiceConnectionSettings"): f"{PACKAGE}._connection",
    (f"{PACKAGE}.testing", "RecordedRequest"): f"{PACKAGE}.testing._server",  # emulator.requests items
    (f"{PACKAGE}.testing.emulator", "RecordedRequest"): f"{PACKAGE}.testing._server",
    (f"{PACKAGE}.testing.emulator", "FAULT_KINDS"): f"{PACKAGE}.testing._faults",  # what inject() accepts
}

#: No underscore, by Airflow's provider conventions, yet not part of this API.
CONVENTION_MODULES = {f"{PACKAGE}.get_provider_info", f"{PACKAGE}.version_compat"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements at module level, including those under ``if``/``try`` (``TYPE_CHECKING`` too)."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            found += _top_level(node.body + node.orelse)
    return found


def _is_private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split("."))


def _origin(module: str, name: str, seen: frozenset[str] = frozenset()) -> str:
    """The module that defines ``name``, following ``from x import name`` through our package."""
    assert module not in seen, f"import loop for {name} through {sorted(seen)}"
    for node in _top_level(_tree(module).body):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return module
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return module
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _origin(node.module, alias.name, seen | {module})
    raise AssertionError(f"{module} neither defines nor imports {name}")


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_public_module_exports_exactly_the_listed_names(module: str) -> None:
    mod = importlib.import_module(module)
    exported = tuple(getattr(mod, "__all__", ()))
    assert sorted(exported) == sorted(PUBLIC_API[module]), f"{module}.__all__ changed: update PUBLIC_API"
    assert len(set(exported)) == len(exported), f"{module}.__all__ lists a name twice"
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ lists {name}, which it does not have"
        assert not name.startswith("_") or (name.startswith("__") and name.endswith("__")), name


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_public_names_are_defined_in_public_modules(module: str) -> None:
    for name in PUBLIC_API[module]:
        origin = _origin(module, name)
        if (module, name) in RE_EXPORTS:
            assert origin == RE_EXPORTS[module, name], (module, name, origin)
        else:
            assert not _is_private(origin), f"{module} exports {name} from the private {origin}"


def test_every_other_module_is_private() -> None:
    public = set(PUBLIC_API) | CONVENTION_MODULES
    not_marked = [
        m
        for m in MODULES
        if m not in public and not _is_private(m) and not m.rsplit(".", 1)[-1].startswith("__")
    ]
    assert f"{PACKAGE}._auth" in MODULES, "the walk missed the package's modules"
    assert not_marked == [], f"modules users do not import need a leading underscore: {not_marked}"


def _imports(module: str) -> set[str]:
    """Our modules that ``module`` imports at module level (``TYPE_CHECKING`` blocks included)."""
    found: set[str] = set()
    for node in _top_level(_tree(module).body):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
    return found - {module}


def test_no_import_circle_between_our_modules() -> None:
    graph = {m: _imports(m) for m in MODULES}
    assert graph[f"{PACKAGE}.hooks.flow_service"], "the graph found no imports: the check has no teeth"
    circles: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == path[0]:
                circles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each circle once, from its smallest module
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


# One interpreter pays for Airflow's import once, then forks a child per public module: each child
# imports that module before any other module of ours, as a DAG file or the triggerer would.
_FIRST_IMPORT = """
import importlib, json, os, sys, traceback
import pytest  # the plugin module needs it; paid once here rather than in its child
import airflow
# Airflow itself may load the package and its provider info (as it would in a DAG file): no more.
early = {m for m in sys.modules if m.startswith("airflow_provider_flowservice")}
assert early <= {"airflow_provider_flowservice", "airflow_provider_flowservice.get_provider_info"}, early
failed = {}
for name in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed[name] = status
print(json.dumps(failed))
"""


def test_each_public_module_imports_first_in_a_fresh_interpreter() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FIRST_IMPORT, json.dumps(sorted(PUBLIC_API))],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),  # conftest's isolated AIRFLOW_HOME
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}, result.stderr[-3000:]
