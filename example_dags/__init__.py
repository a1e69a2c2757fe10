"""The provider's example DAGs, shipped in the wheel as ``airflow_provider_flowservice.example_dags``.

Copy them into your DAGs folder to try them:

    cp "$(python -m airflow_provider_flowservice.example_dags)"/example_*.py "$AIRFLOW_HOME/dags/"
"""

from __future__ import annotations

from pathlib import Path

#: The folder holding the example DAG files.
FOLDER = Path(__file__).resolve().parent

