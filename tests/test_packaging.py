"""The distribution's layout: every package directory is listed, the example DAGs ship in it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_directory_is_listed_for_the_wheel() -> None:
    """pyproject lists packages by hand (to map example_dags/): a new subpackage must be added there."""
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "airflow_provider_flowservice").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(SETUPTOOLS["packages"])
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def test_example_dags_ship_as_a_subpackage_that_names_its_folder() -> None:
    assert SETUPTOOLS["package-dir"] == {"airflow_provider_flowservice.example_dags": "example_dags"}
    from airflow_provider_flowservice.example_dags import FOLDER

    shipped = {p.name for p in FOLDER.glob("example_*.py")}
    assert shipped == {p.name for p in (ROOT / "example_dags").glob("example_*.py")}
    assert len(shipped) >= 2


def test_every_runtime_dependency_declares_a_floor() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("floors", ROOT / "scripts" / "dependency_floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    floors = module.declared_floors()  # raises if one has no '>=' bound
    assert floors["apache-airflow-providers-common-compat"] >= module.Version("1.22.0")
