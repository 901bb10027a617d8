"""The fault suite reuses the real-process cluster fixture of the integration tests."""

from tests.integration.test_clusters import dask_processes  # noqa: F401 (a fixture)
from tests.integration.test_failures import cli  # noqa: F401 (a fixture)
