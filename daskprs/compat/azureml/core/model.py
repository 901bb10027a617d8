"""``azureml.core.model.Model``: ``get_model_path`` answered from the step's ``models``."""

from __future__ import annotations

import json
import os

ENV_MODELS = "DASKPRS_MODELS"


class ModelNotFoundException(Exception):
    """A model name the step's ``models`` mapping does not have (Azure's exception name)."""


class Model:
    """Registered models, as the step's ``models`` mapping names them."""

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None,
                       _workspace: object = None) -> str:
        """The local path of the model ``model_name`` (a file or a folder).

        Parameters
        ----------
        model_name
            A name of the step's ``models`` mapping.
        version
            Accepted for Azure's signature; the mapping holds one path per name.
        _workspace
            Accepted for Azure's signature and ignored.

        Raises
        ------
        ModelNotFoundException
            When the mapping has no such name; the message lists the names it has.
        """
        models = json.loads(os.environ.get(ENV_MODELS) or "{}")
        if model_name in models:
            return str(models[model_name])
        where = "the step's models mapping" if ENV_MODELS in os.environ else \
            "models (no daskprs job: this runs outside one)"
        raise ModelNotFoundException(
            f"Model.get_model_path: {model_name!r} is not in {where}; known: "
            f"{sorted(models)}. Add it to the step: models={{{model_name!r}: "
            f"'path/or/url'}} (YAML: models: {{{model_name}: path/or/url}}).")
