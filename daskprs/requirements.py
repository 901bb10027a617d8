"""``environment={"pip": [...]}``: check requirements here, or install them on workers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import InvalidRequirement, Requirement

from daskprs.errors import ConfigError, Problem


def unmet_requirements(requirements: list[str]) -> list[str]:
    """The requirements this Python environment does not satisfy."""
    unmet = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            unmet.append(text)
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed,
                                                                          prereleases=True):
            unmet.append(text)
    return unmet


def check_requirements(requirements: list[str]) -> None:
    """Raise a ConfigError with the pip command when a requirement is not met here.

    Used for the embedded cluster and ``inline``, whose workers share this environment.
    """
    unmet = unmet_requirements(requirements)
    if unmet:
        command = "pip install " + " ".join(repr(r) if " " in r or "<" in r or ">" in r
                                            else r for r in unmet)
        raise ConfigError([Problem("environment.pip", "keyword argument",
                                   "lists packages this environment does not have", unmet,
                                   f"Install them: {command}")])
