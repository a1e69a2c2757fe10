"""Hooks: :mod:`airflow_provider_flowservice.hooks.flow_service`."""
