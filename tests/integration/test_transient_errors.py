"""Transient errors (issue 13 item 4): ``retry_on`` failures are retried with back-off and
not charged to ``run_max_try``, up to ``transient_max_try``; counted on their own.

Jobs run on the session ``client`` (2 workers x 1 thread). The entry script decides from
``mini_batch_context.attempt`` (no clocks): attempts 1 and 2 of every mini-batch raise.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.errors import ConfigError
from daskprs.transient import BACKOFF_BASE, BACKOFF_CAP, backoff_seconds, exception_kinds, matches

# Attempts 1 and 2 of each mini-batch raise --error (a ConnectionError subclass, or a
# class named like botocore's in a module of the same name); later attempts return ids.
FLAKY_SCRIPT = """
import argparse
import sys
import types


def init():
    global error
    parser = argparse.ArgumentParser()
    parser.add_argument("--error")
    args, _ = parser.parse_known_args()
    if args.error == "client":
        module = types.ModuleType("botocore.exceptions")
        error = type("ClientError", (Exception,), {"__module__": "botocore.exceptions"})
        module.ClientError = error
    elif args.error == "value":
        error = ValueError
    else:
        error = ConnectionResetError  # a ConnectionError, matched on its class hierarchy


def run(mini_batch, mini_batch_context):
    if mini_batch_context.attempt <= 2:
        raise error(f"flaky on attempt {mini_batch_context.attempt}")
    return mini_batch["id"].tolist()
"""


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "logs" / "sys" / "mini_batches.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _step(tmp_path: Path, make_parquet: Any, write_script: Any, error: str, files: int = 2,
          **config: Any) -> tuple[ParallelRunStep, Path]:
    make_parquet(tmp_path / "data", files=files, rows_per_file=20, row_group_size=10)
    source = write_script(tmp_path, FLAKY_SCRIPT)
    out = tmp_path / "out"
    parameters = {"mini_batch_size": "10 rows", "run_max_try": 1, **config}
    step = ParallelRunStep(
        name="flaky", inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
        output=str(out), arguments=["--error", error],
        parallel_run_config=ParallelRunConfig(source_directory=str(source),
                                              entry_script="score.py", **parameters))
    return step, out


def test_transient_error_twice_per_mini_batch_with_one_try_completes(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    step, out = _step(tmp_path, make_parquet, write_script, "connection",
                      retry_on=[ConnectionError])
    result = step.run(client=client, progress=False)
    assert result.status == "Completed", result.summary()
    assert sorted(result.read_output()[0]) == list(range(40))  # every row exactly once
    assert result.mini_batches["succeeded"] == 4
    assert result.attempts["transient"] == 8
    assert result.attempts["failed"] == 0
    assert result.first_errors == []  # retried transient failures are not the job's errors
    rows = _rows(out)
    assert Counter(r["status"] for r in rows) == {"transient": 8, "succeeded": 4}
    for row in rows:
        expected = "succeeded" if row["attempt"] == "3" else "transient"
        assert row["status"] == expected, row
    assert {r["error"] for r in rows if r["status"] == "transient"} == {
        "ConnectionResetError: flaky on attempt 1", "ConnectionResetError: flaky on attempt 2"}
    assert "8 transient, retried uncharged" in result.summary()


def test_retry_on_matches_a_qualified_name(tmp_path: Path, client: Any, make_parquet: Any,
                                           write_script: Any) -> None:
    step, _ = _step(tmp_path, make_parquet, write_script, "client", files=1,
                    retry_on=["botocore.exceptions.ClientError"])
    result = step.run(client=client, progress=False)
    assert result.status == "Completed", result.summary()
    assert result.attempts["transient"] == 4


def test_transient_failures_beyond_transient_max_try_are_charged(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    step, out = _step(tmp_path, make_parquet, write_script, "connection",
                      retry_on=["ConnectionError"], transient_max_try=1)
    result = step.run(client=client, progress=False)
    assert result.status == "Failed"
    assert result.mini_batches["failed"] == 4
    assert result.attempts["transient"] == 4
    assert result.attempts["failed"] == 4
    assert Counter(r["status"] for r in _rows(out)) == {"transient": 4, "failed": 4}


def test_errors_not_named_in_retry_on_are_charged(tmp_path: Path, client: Any,
                                                  make_parquet: Any, write_script: Any) -> None:
    step, _ = _step(tmp_path, make_parquet, write_script, "value",
                    retry_on=[ConnectionError], run_max_try=2)
    result = step.run(client=client, progress=False)
    assert result.status == "Failed"
    assert result.attempts["transient"] == 0
    assert result.attempts["failed"] == 8


def test_exceptions_match_on_their_class_hierarchy_by_plain_or_qualified_name() -> None:
    kinds = exception_kinds(ConnectionResetError("x"))
    assert kinds[:2] == ("builtins.ConnectionResetError", "builtins.ConnectionError")
    assert matches(kinds, ["ConnectionError"])
    assert matches(kinds, ["builtins.OSError"])
    assert not matches(kinds, ["TimeoutError"])
    assert matches(("botocore.exceptions.ClientError", "builtins.Exception"), ["ClientError"])
    assert not matches(kinds, [])


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(0)
    for retry in range(1, 12):
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retry - 1))
        assert ceiling / 2 <= backoff_seconds(retry, rng) <= ceiling


@pytest.mark.parametrize(("values", "message"), [
    ({"retry_on": [int]}, "retry_on (keyword argument): must name exception classes, got "
                          "<class 'int'>"),
    ({"retry_on": ["not a name"]}, "retry_on (keyword argument): must hold exception classes "
                                   "or dotted names, got 'not a name'"),
    ({"transient_max_try": -1}, "transient_max_try (keyword argument): must be >= 0, got -1"),
])
def test_bad_transient_parameters_are_config_errors(tmp_path: Path, write_script: Any,
                                                    values: dict[str, Any], message: str
                                                    ) -> None:
    source = write_script(tmp_path, "def run(mini_batch):\n    return mini_batch\n")
    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(source_directory=str(source), entry_script="score.py", **values)
    assert message in str(caught.value)


def test_transient_errors_are_retried_inline_too(tmp_path: Path, make_parquet: Any,
                                                  write_script: Any) -> None:
    step, out = _step(tmp_path, make_parquet, write_script, "connection", files=1,
                      retry_on=[ConnectionError], compute_target="inline")
    result = step.run(progress=False)
    assert result.status == "Completed", result.summary()
    assert sorted(result.read_output()[0]) == list(range(20))
    assert Counter(r["status"] for r in _rows(out)) == {"transient": 4, "succeeded": 2}
