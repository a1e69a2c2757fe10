"""``python -m airflow_provider_flowservice.testing``: run the emulator from the command line."""

import sys

from airflow_provider_flowservice.testing.emulator import main

sys.exit(main())
