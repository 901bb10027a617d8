"""Pipelines: steps that read what earlier steps wrote (Azure's ``azureml.pipeline``).

``Pipeline(steps=[...]).run()`` orders the steps by the placeholders (``PipelineData``,
``OutputFileDatasetConfig``) they write and read, runs them on one cluster and returns a
``PipelineResult``; ``load_pipeline(path)`` reads a pipeline YAML file.
"""

from daskprs.pipeline.pipeline import Pipeline, PipelinePlan
from daskprs.pipeline.placeholders import OutputFileDatasetConfig, PipelineData
from daskprs.pipeline.result import PipelineResult, ScriptResult, StepOutcome
from daskprs.pipeline.script_step import PythonScriptStep

__all__ = ["OutputFileDatasetConfig", "Pipeline", "PipelineData", "PipelinePlan",
           "PipelineResult", "PythonScriptStep", "ScriptResult", "StepOutcome"]
