"""The step's ``models`` mapping: what ``Model.get_model_path(name)`` returns in a job.

Azure entry scripts find registered models with ``azureml.core.Model.get_model_path(name)``.
daskprs has no model registry; the step maps each name to a local path or an fsspec URL::

    ParallelRunStep(..., models={"iris-prs": "models/iris_model.pkl",
                                 "mnist-prs": {"path": "s3://bucket/mnist/",
                                               "storage_options": {...}}})

Local paths are made absolute (in YAML: relative to the file); remote ones are downloaded
once per worker (:func:`daskprs.compat.model_variables`). A literal name the entry script
passes to ``get_model_path`` that the mapping lacks is a ConfigError before any cluster
starts; the model files are listed for the job fingerprint, so a changed model reruns it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daskprs.storage import normalize_url
from daskprs.validation import Checker

# get_model_path("name"), get_model_path(model_name='name'): literal names only
_LITERAL_CALL = re.compile(
    r"get_model_path\(\s*(?:model_name\s*=\s*)?(?P<q>['\"])(?P<name>[^'\"\n]+)(?P=q)")


@dataclass(frozen=True)
class ModelSource:
    """One entry of ``models``.

    Parameters
    ----------
    name
        The name the script passes to ``get_model_path``.
    url
        An absolute local path or an fsspec URL (a file or a folder).
    storage_options
        fsspec options for ``url``.
    """

    name: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)


def check_models(checker: Checker, models: Any, script_path: str | None,
                 base: str | None = None) -> tuple[ModelSource, ...]:
    """Check a ``models`` mapping and the literal names the entry script asks for.

    ``base``: the folder relative local paths start from (the YAML file's; else the
    current directory).
    """
    sources: list[ModelSource] = []
    fix = "Use models={'iris-prs': 'models/iris_model.pkl'}"
    if models is not None and not isinstance(models, Mapping):
        checker.add("models", "must be a mapping of model names to paths", models, fix)
        models = None
    for name, entry in (models or {}).items():
        if not isinstance(name, str) or not name.strip():
            checker.add("models", "has a name that is not text", name, fix)
            continue
        path, options = entry, {}
        if isinstance(entry, Mapping):
            checker.unknown_keys(f"models.{name}.", [str(k) for k in entry],
                                 ("path", "storage_options"))
            path, options = entry.get("path"), entry.get("storage_options") or {}
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            checker.add(f"models.{name}", "must be a path or URL", path,
                        f"Use models={{{name!r}: 'models/model.pkl'}}")
            continue
        if not isinstance(options, Mapping):
            checker.add(f"models.{name}.storage_options", "must be a mapping", options,
                        "Use storage_options: {key: ..., secret: ...}")
            continue
        text = os.fspath(path)
        if base is not None and "://" not in text and not os.path.isabs(text):
            text = os.path.join(base, text)
        sources.append(ModelSource(name, normalize_url(text), dict(options)))
    _check_script_names(checker, [s.name for s in sources], script_path)
    return tuple(sources)


def literal_model_names(script_path: str) -> list[str]:
    """The literal names the script passes to ``get_model_path``, in order, once each."""
    try:
        with open(script_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return []
    return list(dict.fromkeys(m.group("name") for m in _LITERAL_CALL.finditer(text)))


def _check_script_names(checker: Checker, known: list[str], script_path: str | None) -> None:
    if script_path is None or not os.path.isfile(script_path):
        return
    from daskprs.compat import azureml_core_installed

    if azureml_core_installed():  # the real Model class answers, not the mapping
        return
    for name in literal_model_names(script_path):
        if name not in known:
            checker.add("models", f"has no entry {name!r}, which the entry script asks for "
                        f"with Model.get_model_path (known: {sorted(known)})", name,
                        f"Add it: models={{{name!r}: 'path/to/model'}} (YAML: models: "
                        f"{{{name}: path/to/model}})")


def model_listing(models: tuple[tuple[str, str, dict[str, Any]], ...]
                  ) -> list[tuple[str, int, str]]:
    """``(url, size, version)`` of every model file (``models``: name, url, storage
    options), for the job fingerprint.

    Raises
    ------
    InputError
        When a model's path matches nothing or cannot be read.
    """
    from daskprs.inputs.listing import list_input

    listing: list[tuple[str, int, str]] = []
    for name, url, options in models:
        files = list_input((url,), options, None, f"model {name!r}")
        listing.extend((f.url, f.size, f.version) for f in files)
    return listing
