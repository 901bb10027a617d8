"""daskprs' stand-in for ``azureml.core`` (used only where azureml-core is not installed).

It offers what Azure ParallelRunStep entry scripts take from ``azureml.core`` at run time:
:class:`Model` (``Model.get_model_path`` reads the step's ``models`` mapping) and
:class:`Run` (``Run.get_context()`` is an offline run whose metrics go to
``logs/user/metrics/<worker>.jsonl``). Anything else raises AttributeError or ImportError,
as a missing feature should.
"""

from azureml.core.model import Model, ModelNotFoundException
from azureml.core.run import Run

__all__ = ["Model", "ModelNotFoundException", "Run"]
