"""``python -m airflow_provider_flowservice.example_dags`` prints the folder of the example DAG files."""

from __future__ import annotations

if __name__ == "__main__":
    from airflow_provider_flowservice.example_dags import FOLDER

    print(FOLDER)
