"""Azure ML v2 YAML: a ``type: parallel`` job or parallel component run as a ParallelRunStep.

:func:`daskprs.azure.job.load_azure_step` maps the file; :mod:`daskprs.azure.data_table`
resolves ``azureml:`` names.
"""

from __future__ import annotations

from typing import Any


def is_azure_document(data: dict[str, Any]) -> bool:
    """Whether a YAML mapping is Azure v2 (a ``$schema`` of azuremlschemas, or
    ``type: parallel`` / ``type: pipeline``) rather than a daskprs step config."""
    schema = data.get("$schema")
    if isinstance(schema, str) and "azuremlschemas" in schema:
        return True
    return data.get("type") in ("parallel", "pipeline")
