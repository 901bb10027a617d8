"""The Python API: one ConfigError for every bad keyword, YAML round trip, exported names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import daskprs
from daskprs import ConfigError, Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.errors import DaskprsError, Problem

EXPORTED = [
    "ClusterError",
    "ClusterLostError",
    "ConfigError",
    "DaskprsError",
    "Dataset",
    "EntryScript",
    "EntryScriptError",
    "InitFailedError",
    "InputError",
    "JobFailedError",
    "JobResult",
    "MiniBatchContext",
    "OutputError",
    "OutputFileDatasetConfig",
    "ParallelRunConfig",
    "ParallelRunStep",
    "Pipeline",
    "PipelineData",
    "PipelineResult",
    "PythonScriptStep",
]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "score.py"
    path.parent.mkdir()
    path.write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n",
                    encoding="utf-8")
    return path


def test_bad_keyword_values_raise_one_config_error_listing_each(script: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(entry_script="score.py", source_directory=str(script.parent),
                          mini_batch_size="1 MB", error_threshold="ten", run_max_try=True,
                          allowed_failed_percent=101, output_action="append_rows",
                          append_row_separator="::", run_invocation_timeout=0,
                          logging_level="verbose")

    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, DaskprsError)
    assert error.exit_code == 2
    assert [(p.parameter, p.value) for p in error.problems] == [
        ("mini_batch_size", "1 MB"),
        ("error_threshold", "ten"),
        ("allowed_failed_percent", 101),
        ("output_action", "append_rows"),
        ("append_row_separator", "::"),
        ("run_invocation_timeout", 0),
        ("run_max_try", True),
        ("logging_level", "verbose"),
    ]
    assert {p.source for p in error.problems} == {"keyword argument"}
    lines = str(error).splitlines()
    assert lines[0] == "invalid configuration, 8 problems:"
    assert lines[1] == ("  - mini_batch_size (keyword argument): has a space, got '1 MB'. "
                        "Did you mean '1MB'?")
    assert lines[7] == ("  - run_max_try (keyword argument): must be an integer >= 1, got True. "
                        "Use 1 or more (attempts, not retries).")
    assert len(lines) == 9


def test_one_bad_keyword_says_1_problem(script: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(entry_script=str(script), node_count=0)

    assert str(caught.value) == ("invalid configuration, 1 problem:\n"
                                 "  - node_count (keyword argument): must be >= 1, got 0. "
                                 "Use 1 or more.")
    assert caught.value.problems == [
        Problem("node_count", "keyword argument", "must be >= 1", 0, "Use 1 or more")]


def test_a_missing_entry_script_is_a_keyword_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(entry_script="nowhere.py", source_directory=str(tmp_path))

    (problem,) = caught.value.problems
    assert problem.parameter == "entry_script"
    assert problem.source == "keyword argument"
    assert problem.value == "nowhere.py"
    assert problem.message == (f"does not exist in source_directory {str(tmp_path)!r} "
                               f"(looked for {str(tmp_path / 'nowhere.py')!r})")


@pytest.mark.parametrize(("source", "says"), [
    pytest.param("def run():\n    return []\n", "defines run() without a parameter at line 1",
                 id="no parameter"),
    pytest.param("def run(mini_batch, context, model):\n    return []\n",
                 "defines run() with required parameters besides mini_batch and "
                 "mini_batch_context (model) at line 1", id="three required parameters"),
    pytest.param("def run(mini_batch, *, model):\n    return []\n",
                 "defines run() with required parameters besides mini_batch and "
                 "mini_batch_context (model) at line 1", id="a required keyword"),
    pytest.param("def run(*, mini_batch):\n    return []\n",
                 "defines run() with keyword-only parameters (mini_batch) at line 1",
                 id="a keyword-only parameter"),
])
def test_a_run_that_cannot_take_one_mini_batch_is_refused(tmp_path: Path, source: str,
                                                          says: str) -> None:
    (tmp_path / "score.py").write_text(source, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(entry_script="score.py", source_directory=str(tmp_path))

    assert [p.parameter for p in caught.value.problems] == ["entry_script"]
    assert says in str(caught.value)
    assert "Define it as 'def run(mini_batch):'" in str(caught.value)


@pytest.mark.parametrize("source", [
    "def run(mini_batch):\n    return []\n",
    "def run(mini_batch, model=None, *, verbose=False):\n    return []\n",
    "def run(mini_batch, mini_batch_context):\n    return []\n",
    "def run(*args):\n    return []\n",
    "from helpers import run\n",
])
def test_a_run_that_takes_one_mini_batch_is_accepted(tmp_path: Path, source: str) -> None:
    (tmp_path / "score.py").write_text(source, encoding="utf-8")

    config = ParallelRunConfig(entry_script="score.py", source_directory=str(tmp_path))

    assert config.script_path == str(tmp_path / "score.py")


def test_an_entry_object_whose_run_takes_no_parameter_is_refused() -> None:
    class Script:
        @staticmethod
        def run() -> list[str]:
            return []

    with pytest.raises(ConfigError, match=r"has a run\(\) that cannot take the mini-batch"):
        ParallelRunConfig(entry_script=Script())


def test_an_entry_object_whose_run_takes_the_context_is_accepted() -> None:
    class Script:
        @staticmethod
        def run(mini_batch: object, mini_batch_context: object) -> list[str]:
            return []

    assert ParallelRunConfig(entry_script=Script()).script_path is None


def test_a_host_port_compute_target_is_a_tcp_address(script: Path) -> None:
    config = ParallelRunConfig(entry_script=str(script), compute_target="127.0.0.1:8786")

    assert config.compute_target == "tcp://127.0.0.1:8786"


def test_an_azure_compute_name_is_ignored_with_a_warning(
        script: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = ParallelRunConfig(entry_script=str(script), compute_target="cpu-cluster")

    assert config.compute_target is None
    assert "compute_target 'cpu-cluster' is an Azure compute name and is ignored" in caplog.text


def test_step_run_refuses_a_client_string_that_is_not_an_address(script: Path,
                                                                 tmp_path: Path) -> None:
    step = ParallelRunStep(name="score", parallel_run_config=ParallelRunConfig(
        entry_script=str(script)), inputs=[Dataset.File.from_files(str(script))],
        output=str(tmp_path / "out"))

    with pytest.raises(ConfigError) as caught:
        step.run(client="localhost:8786x")

    assert str(caught.value.problems[0]) == (
        "client (keyword argument): has the port '8786x', which is not a number from 1 to "
        "65535, got 'localhost:8786x'. Use client='tcp://127.0.0.1:8786' (host:port is read "
        "as tcp://host:port).")
    assert not (tmp_path / "out").exists()


def test_step_validate_returns_the_plan_and_creates_nothing(script: Path,
                                                           tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "data").mkdir()
    pd.DataFrame({"x": range(25)}).to_parquet(tmp_path / "data" / "part.parquet")
    step = ParallelRunStep(
        name="score", inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
        parallel_run_config=ParallelRunConfig(entry_script=str(script),
                                              mini_batch_size="10 rows"),
        output=str(tmp_path / "out"))
    before = sorted(tmp_path.rglob("*"))

    summary = step.validate()

    assert (summary.name, summary.input_files, summary.mini_batches, summary.items,
            summary.mini_batch_size, summary.output) == (
        "score", 1, 3, 25, "10 rows", str(tmp_path / "out"))
    assert len(summary.fingerprint) >= 16
    assert str(summary) == (f"valid: score: 1 input files, 3 mini-batches of 10 rows, 25 "
                            f"items; output {tmp_path / 'out'}")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("input_path", "output", "refused"), [
    pytest.param("s3://bucket/data/", "s3://bucket/data/out", True, id="s3 output in input"),
    pytest.param("s3a://bucket/data", "s3://bucket/data/out", True, id="s3a and s3 alike"),
    pytest.param("s3://bucket/data/out/part.parquet", "s3://bucket/data/out", True,
                 id="s3 input in output"),
    pytest.param("s3://bucket/data", "s3://bucket/data-out", False, id="s3 sibling prefix"),
    pytest.param("s3://bucket/data", "s3://other/data/out", False, id="another bucket"),
    pytest.param("s3://bucket/data", "gs://bucket/data/out", False, id="another scheme"),
    pytest.param("memory://data/*.parquet", "memory://data/out", False,
                 id="memory glob above the output"),
])
def test_output_and_input_urls_are_compared_by_bucket_and_prefix(
        script: Path, input_path: str, output: str, refused: bool) -> None:
    def make() -> ParallelRunStep:
        return ParallelRunStep(
            name="score", inputs=[Dataset.Tabular.from_parquet_files(input_path)],
            parallel_run_config=ParallelRunConfig(entry_script=str(script)), output=output)

    if not refused:
        assert make().output == output
        return
    with pytest.raises(ConfigError) as caught:
        make()
    assert [p.parameter for p in caught.value.problems] == ["output"]
    assert repr(input_path) in str(caught.value)


def test_a_relative_output_inside_a_relative_input_folder_is_refused(
        script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="each run would read its own output as input"):
        ParallelRunStep(name="score", inputs=[Dataset.File.from_files("src")],
                        parallel_run_config=ParallelRunConfig(entry_script=str(script)),
                        output="src/out")


def test_step_keyword_problems_are_reported_together(script: Path, tmp_path: Path) -> None:
    config = ParallelRunConfig(entry_script=str(script))
    data = Dataset.Tabular.from_parquet_files(str(tmp_path / "*.parquet"))

    with pytest.raises(ConfigError) as caught:
        ParallelRunStep(name="Score", parallel_run_config=config,
                        inputs=[data.as_named_input("t"), data.as_named_input("t")],
                        output=str(tmp_path / "out"), arguments=["--run_max_try", True],
                        allow_reuse="yes")

    assert [(p.parameter, p.value) for p in caught.value.problems] == [
        ("name", "Score"),
        ("inputs", "t"),
        ("arguments[0]", "--run_max_try"),
        ("arguments[1]", True),
        ("allow_reuse", "yes"),
    ]
    assert {p.source for p in caught.value.problems} == {"keyword argument"}


class Kind(str):
    """A dataset kind with a chosen hash, to fix the order of a set of kinds."""

    def __new__(cls, value: str, hash_value: int) -> Kind:
        kind = super().__new__(cls, value)
        kind.hash_value = hash_value  # type: ignore[attr-defined]
        return kind

    def __hash__(self) -> int:
        return self.hash_value  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("first", ["file", "tabular"])
def test_mixed_inputs_are_one_problem_whichever_kind_a_set_yields_first(
        script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Only the mix is reported, not a mini_batch_size problem for one arbitrary kind."""
    from daskprs.datasets import FileDataset, TabularDataset

    monkeypatch.setattr(FileDataset, "kind", Kind("file", 0 if first == "file" else 1))
    monkeypatch.setattr(TabularDataset, "kind", Kind("tabular", 0 if first == "tabular" else 1))
    config = ParallelRunConfig(entry_script=str(script), mini_batch_size="10 rows")

    with pytest.raises(ConfigError) as caught:
        ParallelRunStep(name="mixed", parallel_run_config=config,
                        inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "t")),
                                Dataset.File.from_files(str(tmp_path / "f"))],
                        output=str(tmp_path / "out"))

    assert [(p.parameter, p.value) for p in caught.value.problems] == [
        ("inputs", ["file", "tabular"])]


def test_save_to_yaml_and_load_yaml_round_trip(script: Path, tmp_path: Path) -> None:
    config = ParallelRunConfig(
        entry_script="score.py", source_directory=str(script.parent), mini_batch_size="5000 rows",
        error_threshold=10, allowed_failed_count=2, allowed_failed_percent=12.5,
        output_action="parquet", append_row_file_name="scores.txt", append_row_separator=",",
        run_invocation_timeout=30.5, run_max_try=2, node_count=2, process_count_per_node=3,
        compute_target="tcp://scheduler:8786", environment={"pip": ["scikit-learn>=1.4"]},
        environment_variables={"MODEL": "m.joblib"}, logging_level="debug",
        description="nightly scoring")
    path = tmp_path / "prc.yaml"

    config.save_to_yaml(str(path))

    assert path.read_text(encoding="utf-8").startswith("parallel_run_config:\n")
    loaded = ParallelRunConfig.load_yaml(str(path))
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    assert loaded.logging_level == "DEBUG"
    assert ParallelRunConfig.load_yaml(object(), str(path)) == config  # Azure's workspace


def test_load_yaml_validates_what_it_reads(script: Path, tmp_path: Path) -> None:
    path = tmp_path / "prc.yaml"
    path.write_text(f"parallel_run_config:\n  entry_script: {script}\n  run_max_try: 0\n",
                    encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig.load_yaml(str(path))

    assert [(p.parameter, p.value) for p in caught.value.problems] == [("run_max_try", 0)]


def test_all_exports_exactly_the_public_names() -> None:
    assert daskprs.__all__ == EXPORTED
    public = sorted(name for name in dir(daskprs) if not name.startswith("_"))
    assert public == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_each_exported_name_resolves_to_its_object(name: str) -> None:
    value = getattr(daskprs, name)

    assert value.__name__ == name
    assert value.__module__.startswith("daskprs.")
    namespace: dict[str, object] = {}
    exec(f"from daskprs import {name}", namespace)
    assert namespace[name] is value
    assert name in dir(daskprs)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError) as caught:
        daskprs.ParallelRunSteps  # noqa: B018

    assert str(caught.value) == "module 'daskprs' has no attribute 'ParallelRunSteps'"


def test_every_error_class_has_the_documented_exit_code() -> None:
    assert {name: getattr(daskprs, name).exit_code for name in EXPORTED
            if name.endswith("Error")} == {
        "ClusterError": 2, "ClusterLostError": 1, "ConfigError": 2, "DaskprsError": 3,
        "EntryScriptError": 2,
        "InitFailedError": 1, "InputError": 2, "JobFailedError": 1, "OutputError": 2}


def test_importing_entry_script_helpers_does_not_import_dask() -> None:
    code = ("import sys\nfrom daskprs import EntryScript, MiniBatchContext\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'pandas', 'pyarrow')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)

    assert done.stdout == "[]\n"
