"""Sensors of the Flow Service provider: :mod:`airflow_provider_flowservice.sensors.flow_service`."""
