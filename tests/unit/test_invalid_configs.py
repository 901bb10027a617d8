"""Invalid YAML configurations: refused by ``daskprs run`` with exit 2, before any cluster.

Every case starts from one valid project in ``tmp_path`` (config, entry scripts, a tiny
Parquet file) and makes exactly one change, in the YAML file or with ``--set``. The
error must name the parameter and where it came from, show the value with ``repr`` and
say how to fix it; no cluster may start and nothing may be written.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

from daskprs.cli import main
from daskprs.step import STEP_NAME

BASE_CONFIG: dict[str, Any] = {
    "name": "score-test",
    "inputs": [{"name": "table", "type": "tabular", "format": "parquet",
                "path": "data/part.parquet"}],
    "output": "out",
    "arguments": ["--model", "model.joblib"],
    "allow_reuse": True,
    "parallel_run_config": {
        "source_directory": "src",
        "entry_script": "score.py",
        "mini_batch_size": "10 rows",
        "error_threshold": 10,
        "output_action": "append_row",
        "run_invocation_timeout": 60,
        "run_max_try": 3,
    },
}
ROWS = 20
SCRIPTS = {
    "score.py": "def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n",
    "no_run.py": "def init():\n    pass\n",
    "broken.py": "def run(mini_batch)\n    return mini_batch\n",
    "no_parameter.py": "def init():\n    pass\n\n\ndef run():\n    return []\n",
}


# --- the project every case starts from ------------------------------------------------


class ClusterStarted(RuntimeError):
    """Raised by the sentinels that stand in for every way to start or reach a cluster."""


@dataclass
class Sentinel:
    calls: list[str] = field(default_factory=list)

    def fake(self, name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise ClusterStarted(f"{name} was called")

        return refuse


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sentinel]:
    """Replace ``daskprs.cluster.connect`` (and every module's imported copy of it),
    ``LocalCluster`` and ``Client`` with functions that record the call and raise."""
    import distributed

    import daskprs.cluster
    import daskprs.execution  # imported lazily by the job: patch its copy of connect too
    import daskprs.job

    sentinel = Sentinel()
    original = daskprs.cluster.connect
    for name, module in list(sys.modules.items()):
        if name.startswith("daskprs") and getattr(module, "connect", None) is original:
            monkeypatch.setattr(module, "connect", sentinel.fake(f"{name}.connect"))
    monkeypatch.setattr(distributed, "LocalCluster", sentinel.fake("distributed.LocalCluster"))
    monkeypatch.setattr(daskprs.cluster, "LocalCluster", sentinel.fake("LocalCluster"))
    monkeypatch.setattr(daskprs.cluster, "Client", sentinel.fake("Client"))
    yield sentinel


def make_project(root: Path) -> None:
    """Entry scripts and a tiny Parquet file; the config is written by ``write_config``."""
    (root / "src").mkdir()
    for name, text in SCRIPTS.items():
        (root / "src" / name).write_text(text, encoding="utf-8")
    (root / "data").mkdir()
    pd.DataFrame({"x": range(ROWS), "y": [f"r{i}" for i in range(ROWS)]}).to_parquet(
        root / "data" / "part.parquet")


def write_config(root: Path, config: dict[str, Any]) -> Path:
    path = root / "conf.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def invoke(command: str, config_path: Path, sets: tuple[str, ...] = ()) -> Result:
    args = [command, str(config_path)]
    for item in sets:
        args += ["--set", item]
    return CliRunner().invoke(main, args)


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder below ``root`` with its size and mtime."""
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*"))


# --- the table of cases ----------------------------------------------------------------


def prc(**changes: Any) -> Callable[[dict[str, Any], Path], None]:
    def change(config: dict[str, Any], root: Path) -> None:
        config["parallel_run_config"].update(changes)

    return change


def top(**changes: Any) -> Callable[[dict[str, Any], Path], None]:
    def change(config: dict[str, Any], root: Path) -> None:
        config.update(changes)

    return change


def first_input(**changes: Any) -> Callable[[dict[str, Any], Path], None]:
    def change(config: dict[str, Any], root: Path) -> None:
        config["inputs"][0].update(changes)

    return change


def add_input(**entry: Any) -> Callable[[dict[str, Any], Path], None]:
    def change(config: dict[str, Any], root: Path) -> None:
        config["inputs"].append(entry)

    return change


def mixed_inputs(config: dict[str, Any], root: Path) -> None:
    """A file input beside the tabular one; a size valid for both kinds (10 bytes or 10
    files), so that the mix is the only problem (see test_python_api for "10 rows")."""
    config["inputs"].append({"name": "files", "type": "file", "path": "data"})
    config["parallel_run_config"]["mini_batch_size"] = 10


def drop(key: str) -> Callable[[dict[str, Any], Path], None]:
    def change(config: dict[str, Any], root: Path) -> None:
        del config[key]

    return change


def unchanged(config: dict[str, Any], root: Path) -> None:
    return None


def foreign_output(config: dict[str, Any], root: Path) -> None:
    (root / "out").mkdir()
    (root / "out" / "notes.txt").write_text("someone else's file\n", encoding="utf-8")


def output_is_a_file(config: dict[str, Any], root: Path) -> None:
    (root / "out").write_text("not a folder\n", encoding="utf-8")


def nest(input_path: str, output: str, **entry: Any) -> Callable[[dict[str, Any], Path], None]:
    """Input and output paths that overlap (the input's other keys in ``entry``)."""
    def change(config: dict[str, Any], root: Path) -> None:
        config["inputs"][0].update(path=input_path, **entry)
        config["output"] = output
        if entry.get("format") == "delimited":
            (root / "data" / "part.csv").write_text("x,y\n1,a\n", encoding="utf-8")

    return change


def at(relative: str) -> Callable[[Path], str]:
    """A value that is a path below the project (known only when the case runs)."""
    return lambda root: str(root / relative)


@dataclass(frozen=True)
class Case:
    """One invalid configuration and what its error must say.

    ``param``: the parameter as reported; ``via``: where the value came from (``yaml``:
    the file and ``param``, ``set``: ``--set param``, ``--set KEY``: a ``--set`` of a
    parent of ``param``, ``cli``: the command line); ``value``:
    shown with repr (a callable gets the project root); ``fix``: a fragment of the fix;
    ``kind``: ``config`` (a ConfigError listing problems) or ``single`` (one-line error
    naming an input or the output).
    """

    change: Callable[[dict[str, Any], Path], None]
    param: str
    value: Any
    fix: str
    sets: tuple[str, ...] = ()
    via: str = "yaml"
    kind: str = "config"


CASES = [
    # types
    pytest.param(Case(prc(error_threshold="ten"), "parallel_run_config.error_threshold", "ten",
                      "must be an integer >= -1, got 'ten'. Use -1 for no limit"),
                 id="error_threshold is a string"),
    pytest.param(Case(prc(run_max_try=True), "parallel_run_config.run_max_try", True,
                      "must be an integer >= 1, got True. Use 1 or more (attempts, not retries)"),
                 id="run_max_try is a bool"),
    pytest.param(Case(prc(mini_batch_size=True), "parallel_run_config.mini_batch_size", True,
                      "not a bool"),
                 id="mini_batch_size is a bool"),
    pytest.param(Case(prc(allowed_failed_count=1.5), "parallel_run_config.allowed_failed_count",
                      1.5, "must be an integer >= -1"),
                 id="allowed_failed_count is a float"),
    # ranges
    pytest.param(Case(prc(run_max_try=0), "parallel_run_config.run_max_try", 0,
                      "must be >= 1, got 0. Use 1 or more (attempts, not retries)"),
                 id="run_max_try is 0"),
    pytest.param(Case(prc(error_threshold=-2), "parallel_run_config.error_threshold", -2,
                      "must be >= -1, got -2. Use -1 for no limit, or a count such as 10"),
                 id="error_threshold is -2"),
    pytest.param(Case(prc(allowed_failed_percent=101),
                      "parallel_run_config.allowed_failed_percent", 101,
                      "Use a percentage from 0 to 100 (100 = no limit)"),
                 id="allowed_failed_percent is 101"),
    pytest.param(Case(prc(run_invocation_timeout=0), "parallel_run_config.run_invocation_timeout",
                      0, "must be a number > 0, got 0. Give seconds as a positive number"),
                 id="run_invocation_timeout is 0"),
    pytest.param(Case(prc(node_count=0), "parallel_run_config.node_count", 0,
                      "must be >= 1, got 0. Use 1 or more."),
                 id="node_count is 0"),
    pytest.param(Case(prc(process_count_per_node=0), "parallel_run_config.process_count_per_node",
                      0, "leave it unset for one per core"),
                 id="process_count_per_node is 0"),
    pytest.param(Case(unchanged, "parallel_run_config.run_max_try", 0, "Use 1 or more",
                      sets=("parallel_run_config.run_max_try=0",), via="set"),
                 id="run_max_try is 0 via --set"),
    # size syntax
    pytest.param(Case(prc(mini_batch_size="1 MB"), "parallel_run_config.mini_batch_size", "1 MB",
                      "has a space, got '1 MB'. Did you mean '1MB'?"),
                 id="mini_batch_size with a space"),
    pytest.param(Case(prc(mini_batch_size="1.5MB"), "parallel_run_config.mini_batch_size",
                      "1.5MB", "takes whole numbers only, got '1.5MB'. Did you mean '1536KB'?"),
                 id="mini_batch_size with a decimal point"),
    pytest.param(Case(prc(mini_batch_size="ten rows"), "parallel_run_config.mini_batch_size",
                      "ten rows", "rows such as '5000 rows'"),
                 id="mini_batch_size in words"),
    pytest.param(Case(unchanged, "parallel_run_config.mini_batch_size", "1 MB",
                      "got '1 MB'. Did you mean '1MB'?",
                      sets=("parallel_run_config.mini_batch_size=1 MB",),
                      via="set"),
                 id="mini_batch_size with a space via --set"),
    pytest.param(Case(first_input(type="file", path="data"),
                      "parallel_run_config.mini_batch_size", "10 rows",
                      "Use a number of files such as 10"),
                 id="rows as mini_batch_size of a file input"),
    # unknown names, at every level
    pytest.param(Case(top(outputs="out2"), "outputs", "outputs", "Did you mean 'output'?"),
                 id="unknown top-level key"),
    pytest.param(Case(prc(mini_batch_sise="2MB"), "parallel_run_config.mini_batch_sise",
                      "mini_batch_sise", "Did you mean 'mini_batch_size'?"),
                 id="unknown parallel_run_config key"),
    pytest.param(Case(first_input(fromat="parquet"), "inputs[0].fromat", "fromat",
                      "Did you mean 'format'?"),
                 id="unknown key of inputs[0]"),
    pytest.param(Case(prc(compute_target={"class": "dask_jobqueue.SLURMCluster", "option": {}}),
                      "parallel_run_config.compute_target.option", "option",
                      "Did you mean 'options'?"),
                 id="unknown key of compute_target"),
    pytest.param(Case(unchanged, "--set parallel_run_config.mini_batch_sise",
                      "parallel_run_config.mini_batch_sise",
                      "Did you mean 'parallel_run_config.mini_batch_size'?",
                      sets=("parallel_run_config.mini_batch_sise=2MB",), via="cli"),
                 id="unknown --set key"),
    pytest.param(Case(unchanged, "--set outptu", "outptu", "Did you mean 'output'?",
                      sets=("outptu=elsewhere",), via="cli"),
                 id="unknown top-level --set key"),
    pytest.param(Case(unchanged, "--set", "parallel_run_config.run_max_try",
                      "Use --set parallel_run_config.mini_batch_size=2MB",
                      sets=("parallel_run_config.run_max_try",), via="cli"),
                 id="--set without a value"),
    pytest.param(Case(unchanged, "parallel_run_config.append_row_separator", ",,",
                      """Quote it: --set 'parallel_run_config.append_row_separator=",,"'""",
                      sets=("parallel_run_config.append_row_separator=,,",), via="set"),
                 id="--set value that is not YAML"),
    pytest.param(Case(unchanged, "name", "[x", "is not a valid YAML value",
                      sets=("name=[x",), via="set"),
                 id="--set value with an unclosed bracket"),
    # arguments
    pytest.param(Case(top(arguments=["--error_threshold", "5"]), "arguments[0]",
                      "--error_threshold 5",
                      "Remove --error_threshold from arguments, or set "
                      "parallel_run_config.error_threshold to 5"),
                 id="Azure option conflicting with the config"),
    pytest.param(Case(top(arguments=["--model", "m.joblib", "--mini_batch_size=5"]),
                      "arguments[2]", "--mini_batch_size 5",
                      "or set parallel_run_config.mini_batch_size to 5"),
                 id="Azure option --mini_batch_size=5 conflicting with the config"),
    pytest.param(Case(unchanged, "arguments[0]", "--error_threshold 7",
                      "Remove --error_threshold from arguments",
                      sets=("arguments=[--error_threshold, 7]",), via="--set arguments"),
                 id="Azure option via --set arguments conflicting with the config"),
    pytest.param(Case(top(arguments=["--allowed_failed_percent", "lots"]), "arguments[0]",
                      "--allowed_failed_percent lots", "e.g. --allowed_failed_percent 100"),
                 id="Azure option with a value that does not parse"),
    pytest.param(Case(top(arguments=["--model", "m.joblib", "--run_max_try"]), "arguments[2]",
                      "--run_max_try", "Write it as '--run_max_try VALUE'"),
                 id="Azure option without a value"),
    pytest.param(Case(unchanged, "arguments[1]", True, "Quote it",
                      sets=("arguments.1=true",), via="--set arguments[1]"),
                 id="bool argument via --set arguments.1"),
    pytest.param(Case(top(arguments=["model.joblib", "--model"]), "arguments[0]",
                      "model.joblib", "Start the list with an option name such as '--model'"),
                 id="first argument is not an option"),
    pytest.param(Case(top(arguments=["--verbose", True]), "arguments[1]", True,
                      "must be a string or number, got True. Quote it"),
                 id="bool argument"),
    pytest.param(Case(top(arguments=["--labels", None]), "arguments[1]", None,
                      "Quote it: 'null'"),
                 id="null argument"),
    pytest.param(Case(top(arguments=["--labels", "${{side_inputs.labels}}"]), "arguments[1]",
                      "${{side_inputs.labels}}", "Define side_inputs: [{name: labels, ...}]"),
                 id="argument names an undefined side input"),
    # step names
    pytest.param(Case(top(name="Score"), "name", "Score", "Use a name such as 'score'"),
                 id="step name with a capital"),
    pytest.param(Case(top(name="ab"), "name", "ab", "must be 3-32 characters"),
                 id="step name of 2 characters"),
    pytest.param(Case(top(name="score-"), "name", "score-", "Use a name such as 'score'"),
                 id="step name ending with a dash"),
    pytest.param(Case(top(name="a" * 40), "name", "a" * 40, f"Use a name such as {'a' * 32!r}"),
                 id="step name of 40 characters"),
    pytest.param(Case(unchanged, "name", "Score", "must be 3-32 characters",
                      sets=("name=Score",), via="set"),
                 id="bad step name via --set"),
    # entry script and source directory
    pytest.param(Case(prc(entry_script="missing.py"), "parallel_run_config.entry_script",
                      "missing.py", "Give the script's path relative to source_directory"),
                 id="missing entry script"),
    pytest.param(Case(prc(entry_script="no_run.py"), "parallel_run_config.entry_script",
                      "no_run.py", "defines no top-level run(mini_batch)"),
                 id="entry script without run"),
    pytest.param(Case(prc(entry_script="broken.py"), "parallel_run_config.entry_script",
                      "broken.py", "is not valid Python"),
                 id="entry script with a syntax error"),
    pytest.param(Case(prc(entry_script="no_parameter.py"), "parallel_run_config.entry_script",
                      "no_parameter.py", "defines run() without a parameter at line 5, got "
                      "'no_parameter.py'. Define it as 'def run(mini_batch):'"),
                 id="entry script whose run takes no parameter"),
    pytest.param(Case(prc(source_directory="missing_src"), "parallel_run_config.source_directory",
                      at("missing_src"), "Create the folder or fix the path"),
                 id="missing source_directory"),
    # where it runs
    pytest.param(Case(prc(compute_target="localhost:8786x"), "parallel_run_config.compute_target",
                      "localhost:8786x", "has the port '8786x', which is not a number from 1 to "
                      "65535, got 'localhost:8786x'. Use compute_target='tcp://127.0.0.1:8786' "
                      "(host:port is read as tcp://host:port)."),
                 id="compute_target with a bad port"),
    pytest.param(Case(prc(compute_target="http://scheduler:8786"),
                      "parallel_run_config.compute_target", "http://scheduler:8786",
                      "Did you mean compute_target='tcp://scheduler:8786'?"),
                 id="compute_target with an http scheme"),
    pytest.param(Case(unchanged, "parallel_run_config.compute_target", "tcp://scheduler",
                      "has no port, got 'tcp://scheduler'. Did you mean "
                      "compute_target='tcp://scheduler:8786'?",
                      sets=("parallel_run_config.compute_target=tcp://scheduler",), via="set"),
                 id="compute_target without a port via --set"),
    # output options
    pytest.param(Case(prc(output_action="append_rows"), "parallel_run_config.output_action",
                      "append_rows", "Did you mean 'append_row'?"),
                 id="bad output_action"),
    pytest.param(Case(prc(append_row_file_name="a/b.txt"),
                      "parallel_run_config.append_row_file_name", "a/b.txt",
                      "must not contain '/'"),
                 id="append_row_file_name with a slash"),
    pytest.param(Case(prc(append_row_file_name="logs"),
                      "parallel_run_config.append_row_file_name", "logs",
                      "is a name daskprs uses for its own folders"),
                 id="append_row_file_name is logs"),
    pytest.param(Case(prc(append_row_separator="::"), "parallel_run_config.append_row_separator",
                      "::", "must be exactly one character"),
                 id="separator of 2 characters"),
    pytest.param(Case(prc(logging_level="WARN"), "parallel_run_config.logging_level", "WARN",
                      "Did you mean 'WARNING'?"),
                 id="bad logging_level"),
    pytest.param(Case(prc(environment_variables={"1BAD": "x"}),
                      "parallel_run_config.environment_variables", "1BAD",
                      "Use letters, digits and _ only"),
                 id="environment variable with a bad name"),
    pytest.param(Case(drop("output"), "output", None,
                      "(None is allowed only with summary_only)"),
                 id="no output with append_row"),
    pytest.param(Case(top(allow_reuse="yes"), "allow_reuse", "yes", "Use True or False"),
                 id="allow_reuse is a string"),
    # inputs
    pytest.param(Case(first_input(name="1table"), "inputs[0].name", "1table",
                      "Use letters, digits and _, not starting with a digit"),
                 id="bad input name"),
    pytest.param(Case(add_input(name="table", type="tabular", format="parquet", path="data"),
                      "inputs", "table", "Give each a unique .as_named_input(name)"),
                 id="duplicate input names"),
    pytest.param(Case(mixed_inputs, "inputs", ["file", "tabular"],
                      "Give one kind of input per step"),
                 id="mixed tabular and file inputs"),
    pytest.param(Case(first_input(type="files"), "inputs[0].type", "files",
                      "Did you mean 'file'?"),
                 id="bad input type"),
    pytest.param(Case(first_input(format="delimeted"), "inputs[0].format", "delimeted",
                      "Did you mean 'delimited'?"),
                 id="bad input format"),
    pytest.param(Case(first_input(format="csv"), "inputs[0].format", "csv",
                      "Use one of them. Did you mean 'delimited'?"),
                 id="input format csv"),
    pytest.param(Case(first_input(path="data/missing-*.parquet"), "input 'table'",
                      at("data/missing-*.parquet"), "Check the path", kind="single"),
                 id="input path matches nothing"),
    pytest.param(Case(first_input(path=["data/part.parquet", "data/missing.parquet"]),
                      "input 'table'", at("data/missing.parquet"), "Check the path",
                      kind="single"),
                 id="one element of an input list matches nothing"),
    # output folder
    pytest.param(Case(foreign_output, "output", at("out"),
                      "daskprs never deletes files it did not write. Use a new or empty folder",
                      kind="single"),
                 id="non-empty output folder not written by daskprs"),
    pytest.param(Case(output_is_a_file, "output", at("out"), "Give a folder path for output",
                      kind="single"),
                 id="output is a file"),
    # output and inputs apart
    pytest.param(Case(nest("data", "data/out"), "output", at("data/out"),
                      "is inside input 'table' ("),
                 id="output inside the input folder"),
    pytest.param(Case(nest("data", "data/out", format="delimited"), "output", at("data/out"),
                      "each run would read its own output as input"),
                 id="output inside a CSV input folder"),
    pytest.param(Case(nest("data/**/*.parquet", "data/out"), "output", at("data/out"),
                      "each run would read its own output as input"),
                 id="output below a recursive glob"),
    pytest.param(Case(nest("data/*", "data/out"), "output", at("data/out"),
                      "each run would read its own output as input"),
                 id="output matched by a glob"),
    pytest.param(Case(nest("data/part.parquet", "data"), "output", at("data"),
                      "the job would rewrite what it reads, got"),
                 id="input inside the output"),
]


def expected_source(case: Case, config_path: Path) -> str:
    if case.via == "yaml":
        return f"{config_path}: {case.param}"
    if case.via == "set":
        return f"--set {case.param}"
    if case.via.startswith("--set "):
        return case.via
    return "command line"


def test_the_base_project_is_valid_and_validate_writes_nothing(tmp_path: Path,
                                                                no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config_path = write_config(tmp_path, BASE_CONFIG)
    before = snapshot(tmp_path)

    result = invoke("validate", config_path)

    assert result.exit_code == 0, result.output
    assert result.stdout == (f"valid: score-test: 1 input files, 2 mini-batches of 10 rows, "
                             f"{ROWS} items; output {tmp_path / 'out'}\n")
    assert result.stderr == ""
    assert no_cluster.calls == []
    assert snapshot(tmp_path) == before


def test_the_cluster_sentinel_is_reached_by_a_valid_run(tmp_path: Path,
                                                        no_cluster: Sentinel) -> None:
    """Control: the valid base config gets as far as the cluster, so the sentinels work."""
    make_project(tmp_path)
    config_path = write_config(tmp_path, BASE_CONFIG)

    result = invoke("run", config_path, ("parallel_run_config.compute_target=local",))

    assert no_cluster.calls, result.output
    assert result.exit_code == 3
    assert "ClusterStarted" in result.stderr


@pytest.mark.parametrize("case", CASES)
def test_an_invalid_config_is_refused_with_exit_2_before_any_cluster(
        case: Case, tmp_path: Path, no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    case.change(config, tmp_path)
    config_path = write_config(tmp_path, config)
    output_existed = (tmp_path / "out").exists()
    before = snapshot(tmp_path)
    value = case.value(tmp_path) if callable(case.value) else case.value

    result = invoke("run", config_path, case.sets)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    if case.kind == "config":
        assert lines[0] == "error: invalid configuration, 1 problem:", result.stderr
        problems = [line for line in lines if line.startswith("  - ")]
        assert len(problems) == 1, result.stderr
        problem = problems[0]
        assert problem.startswith(f"  - {case.param} ({expected_source(case, config_path)}): "), \
            problem
    else:
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        problem = errors[0]
        assert problem.startswith(f"error: {case.param}: "), problem
    assert f"{value!r}" in problem
    assert case.fix in problem
    assert no_cluster.calls == []
    assert snapshot(tmp_path) == before
    assert (tmp_path / "out").exists() == output_existed


@pytest.mark.parametrize("name", ["Score", "ab", "score-", "a" * 40, "-score", "9lives"])
def test_the_step_name_a_refusal_suggests_is_itself_valid(tmp_path: Path, name: str,
                                                          no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config_path = write_config(tmp_path, {**BASE_CONFIG, "name": name})

    result = invoke("run", config_path)

    assert result.exit_code == 2
    suggestion = re.search(r"Use a name such as '([^']*)'", result.stderr)
    assert suggestion is not None, result.stderr
    assert 3 <= len(suggestion.group(1)) <= 32 and STEP_NAME.match(suggestion.group(1)), \
        f"the fix for {name!r} suggests {suggestion.group(1)!r}, which is refused too"


def problem_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("  - ")]


def test_several_problems_in_one_file_are_all_reported_in_one_error(
        tmp_path: Path, no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    config["name"] = "Score"
    config["parallel_run_config"].update(run_max_try=0, error_threshold="ten",
                                         output_action="append_rows", mini_batch_sise="2MB",
                                         mini_batch_size="1.5MB")
    config_path = write_config(tmp_path, config)

    result = invoke("run", config_path, ("parallel_run_config.node_count=0",))

    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: invalid configuration, 7 problems:"
    reported = sorted(line[4:].split(" (")[0] for line in problem_lines(result))
    assert reported == sorted([
        "name", "parallel_run_config.mini_batch_sise", "parallel_run_config.mini_batch_size",
        "parallel_run_config.error_threshold", "parallel_run_config.output_action",
        "parallel_run_config.run_max_try", "parallel_run_config.node_count"])
    assert ("parallel_run_config.node_count (--set parallel_run_config.node_count): "
            "must be >= 1, got 0.") in result.stderr
    assert no_cluster.calls == []
    assert not (tmp_path / "out").exists()


def test_step_problems_are_reported_together_with_parallel_run_config_problems(
        tmp_path: Path, no_cluster: Sentinel) -> None:
    """One run shows every problem: a bad run_max_try must not hide bad arguments or
    inputs until the user has fixed it."""
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    config["parallel_run_config"]["run_max_try"] = 0
    config["arguments"] = ["elsewhere", "--output"]
    config["inputs"].append({"name": "table", "type": "tabular", "format": "parquet",
                             "path": "data"})
    config_path = write_config(tmp_path, config)

    result = invoke("run", config_path)

    assert result.exit_code == 2
    reported = sorted(line[4:].split(" (")[0] for line in problem_lines(result))
    assert reported == ["arguments[0]", "inputs", "parallel_run_config.run_max_try"], \
        result.stderr
    assert result.stderr.splitlines()[0] == "error: invalid configuration, 3 problems:"
    assert no_cluster.calls == []
    assert not (tmp_path / "out").exists()


def test_validate_refuses_a_run_that_takes_no_parameter(tmp_path: Path,
                                                       no_cluster: Sentinel) -> None:
    """``daskprs validate`` reads run()'s signature from the syntax tree: ``def run():``
    would fail every mini-batch with a TypeError."""
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    config["parallel_run_config"]["entry_script"] = "no_parameter.py"
    config_path = write_config(tmp_path, config)

    result = invoke("validate", config_path)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert problem_lines(result) == [
        f"  - parallel_run_config.entry_script ({config_path}: "
        f"parallel_run_config.entry_script): defines run() without a parameter at line 5, "
        f"got 'no_parameter.py'. Define it as 'def run(mini_batch):' (or 'def run(mini_batch, "
        f"mini_batch_context):' for the context)."]


@pytest.mark.parametrize(("address", "says"), [
    pytest.param("localhost:8786x", "has the port '8786x', which is not a number from 1 to "
                 "65535, got 'localhost:8786x'. Use --scheduler tcp://127.0.0.1:8786 (host:port "
                 "is read as tcp://host:port).", id="a port with a letter"),
    pytest.param("scheduler", "has no port, got 'scheduler'. Did you mean --scheduler "
                 "tcp://scheduler:8786?", id="a host without a port"),
    pytest.param("tcp://127.0.0.1:99999", "has the port '99999'", id="a port above 65535"),
    pytest.param("127.0.0.1:", "has the port ''", id="an empty port"),
    pytest.param("htp://127.0.0.1:8786", "has the scheme 'htp', which is not a Dask comm",
                 id="a misspelled scheme"),
])
def test_a_scheduler_that_is_not_an_address_is_refused_before_any_cluster(
        tmp_path: Path, no_cluster: Sentinel, address: str, says: str) -> None:
    make_project(tmp_path)
    config_path = write_config(tmp_path, BASE_CONFIG)
    before = snapshot(tmp_path)

    result = CliRunner().invoke(main, ["run", str(config_path), "--scheduler", address])

    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0] == "error: invalid configuration, 1 problem:"
    assert problem_lines(result)[0].startswith("  - --scheduler (command line): " + says)
    assert no_cluster.calls == []
    assert snapshot(tmp_path) == before


def test_a_bad_scheduler_is_reported_with_the_config_problems(
        tmp_path: Path, no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config_path = write_config(tmp_path, BASE_CONFIG)

    result = CliRunner().invoke(main, ["run", str(config_path), "--scheduler", "host:x",
                                       "--set", "parallel_run_config.run_max_try=0"])

    assert result.exit_code == 2
    assert [line.split(" (")[0] for line in problem_lines(result)] == [
        "  - --scheduler", "  - parallel_run_config.run_max_try"]


class RefusingClient:
    """Stands in for ``distributed.Client``: records the address, reaches nothing."""

    addresses: ClassVar[list[str]] = []

    def __init__(self, address: Any, **kwargs: Any) -> None:
        RefusingClient.addresses.append(address)
        raise OSError("nothing listens there (test)")


@pytest.fixture
def refusing_scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The real ``connect``, with a Client that reaches no scheduler and a LocalCluster
    that must not start."""
    import daskprs.cluster

    sentinel = Sentinel()
    monkeypatch.setattr(daskprs.cluster, "Client", RefusingClient)
    monkeypatch.setattr(daskprs.cluster, "LocalCluster", sentinel.fake("LocalCluster"))
    RefusingClient.addresses = []
    yield RefusingClient.addresses
    assert sentinel.calls == [], "an embedded LocalCluster was started"


@pytest.mark.parametrize("how", ["--scheduler", "compute_target"])
def test_a_host_port_address_is_read_as_tcp_not_as_a_local_cluster(
        tmp_path: Path, refusing_scheduler: list[str], how: str) -> None:
    make_project(tmp_path)
    config_path = write_config(tmp_path, BASE_CONFIG)
    args = (["--scheduler", "127.0.0.1:8786"] if how == "--scheduler"
            else ["--set", "parallel_run_config.compute_target=127.0.0.1:8786"])

    result = CliRunner().invoke(main, ["run", str(config_path), "--no-progress", *args])

    assert refusing_scheduler == ["tcp://127.0.0.1:8786"], result.output
    assert result.exit_code == 2, result.output
    assert "error: scheduler 'tcp://127.0.0.1:8786' cannot be reached" in result.stderr


def test_an_output_inside_the_input_folder_names_both_and_a_place_beside_it(
        tmp_path: Path, no_cluster: Sentinel) -> None:
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    nest("data", "data/out")(config, tmp_path)
    config_path = write_config(tmp_path, config)

    result = invoke("validate", config_path)

    assert result.exit_code == 2
    assert problem_lines(result) == [
        f"  - output ({config_path}: output): is inside input 'table' ({str(tmp_path / 'data')!r})"
        f": each run would read its own output as input, got {str(tmp_path / 'data/out')!r}. "
        f"Use an output folder outside {str(tmp_path / 'data')!r}, e.g. "
        f"{str(tmp_path / 'data-out')!r}."]


@pytest.mark.parametrize(("input_path", "output"), [
    pytest.param("data/*.parquet", "data/scored", id="a glob that stops above the output"),
    pytest.param("data", "data/_scored", id="an _output a folder input skips"),
    pytest.param("data/part.parquet", "data/scored", id="one file beside the output"),
    pytest.param("data", "data-scored", id="a sibling whose name starts alike"),
])
def test_an_output_the_inputs_never_read_is_accepted(
        tmp_path: Path, no_cluster: Sentinel, input_path: str, output: str) -> None:
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    nest(input_path, output)(config, tmp_path)

    result = invoke("validate", write_config(tmp_path, config))

    assert result.exit_code == 0, result.output


def test_an_output_given_with_set_inside_the_input_folder_is_blamed_on_set(
        tmp_path: Path, no_cluster: Sentinel, monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(tmp_path)
    config = copy.deepcopy(BASE_CONFIG)
    config["inputs"][0]["path"] = "data"
    config_path = write_config(tmp_path, config)
    monkeypatch.chdir(tmp_path)  # paths given with --set are relative to the current folder

    result = invoke("run", config_path, ("output=data/out",))

    assert result.exit_code == 2, result.output
    assert problem_lines(result)[0].startswith(
        f"  - output (--set output): is inside input 'table' ({str(tmp_path / 'data')!r})")
    assert no_cluster.calls == []
    assert not (tmp_path / "data" / "out").exists()
