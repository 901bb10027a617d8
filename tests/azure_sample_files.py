"""Where the vendored Azure v2 samples are, and the data table their tests write."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "azure_samples" / "v2"
STAND_INS = Path(__file__).resolve().parent / "azure_samples" / "stand_ins"


def write_data_table(folder: Path, blobs: Path, bindings: dict[str, Path] | None = None
                     ) -> None:
    """The data table beside a sample's YAML: its workspace datastore is the folder
    ``blobs``; ``bindings`` stand for outputs of pipeline jobs that are not run."""
    text = f"default_datastore: workspaceblobstore\ndatastores:\n  workspaceblobstore: {blobs}\n"
    if bindings:
        text += "bindings:\n" + "".join(f"  {key}: {value}\n" for key, value in bindings.items())
    (folder / "azureml_data.yaml").write_text(text, encoding="utf-8")
