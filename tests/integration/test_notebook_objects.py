"""An entry script defined in a notebook, not in a file (SPEC §1.2, issue 7).

A notebook's cells run in the namespace of ``__main__``; a class or function defined there
is shipped by value (cloudpickle), with the globals it uses. The tests define the script
the same way - source executed in a ``__main__`` namespace, or in a ``types.ModuleType``
that no import can find - and run it on the session LocalCluster (2 worker processes).
"""

from __future__ import annotations

import os
import textwrap
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

ROWS = 2_000

# What a user types in a notebook cell: a global, a class with init/run, an instance.
NOTEBOOK_CELL = """
import os
import pandas as pd

OFFSET = 7

class Scorer:
    def init(self):
        self.pid = os.getpid()

    def run(self, mini_batch):
        return pd.DataFrame({"id": mini_batch["id"], "value": mini_batch["id"] * 2 + OFFSET,
                             "init_pid": self.pid})

scorer = Scorer()
"""

# The same script as module-level functions, the shape of an entry script file.
MODULE_SOURCE = """
import os
import pandas as pd

def init():
    global init_pid
    init_pid = os.getpid()

def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"], "value": mini_batch["id"] * 2 + 7,
                         "init_pid": init_pid})
"""


def run_object(client: Any, script: Any, tmp_path: Path) -> Any:
    """Run ``script`` over ``ROWS`` rows in 10 mini-batches of 200 rows; return the result."""
    frame = pd.DataFrame({"id": np.arange(ROWS, dtype=np.int64)})
    table = Dataset.Tabular.from_pandas_dataframe(frame).as_named_input("table")
    config = ParallelRunConfig(entry_script=script, mini_batch_size="200 rows",
                               output_action="append_row", run_max_try=1)
    step = ParallelRunStep(name="notebook-object", parallel_run_config=config, inputs=[table],
                           output=str(tmp_path / "out"))
    return step.run(client=client, progress=False)


def runner_pids(output: Path) -> set[int]:
    """The pids ``mini_batches.csv`` gives for the runners that ran the attempts."""
    table = pd.read_csv(output / "logs" / "sys" / "mini_batches.csv")
    return set(table["pid"].astype(int))


def check_output(result: Any, client: Any, tmp_path: Path) -> None:
    output = result.read_output()
    output.columns = ["id", "value", "init_pid"]
    assert result.status == "Completed"
    assert result.items == {"total": ROWS, "succeeded": ROWS, "failed": 0}
    assert result.mini_batches["succeeded"] == 10
    assert output["id"].tolist() == list(range(ROWS))
    assert output["value"].tolist() == [2 * i + 7 for i in range(ROWS)]
    init_pids = set(output["init_pid"])
    assert init_pids == runner_pids(tmp_path / "out")
    assert os.getpid() not in init_pids
    assert not init_pids & set(client.run(os.getpid).values())  # not the Dask workers either


def test_class_instance_defined_in_a_notebook_cell_runs_on_worker_processes(client, tmp_path):
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(NOTEBOOK_CELL), "<notebook cell>", "exec"), namespace)
    scorer = namespace["scorer"]

    result = run_object(client, scorer, tmp_path)

    check_output(result, client, tmp_path)
    assert not hasattr(scorer, "pid")  # init() ran in the runners, never on this object


def test_module_object_built_in_memory_runs_on_worker_processes(client, tmp_path):
    module = types.ModuleType("notebook_script")
    exec(compile(textwrap.dedent(MODULE_SOURCE), "<notebook cell>", "exec"), module.__dict__)

    result = run_object(client, module, tmp_path)

    check_output(result, client, tmp_path)
    assert not hasattr(module, "init_pid")
