"""Storage errors: clear messages naming the URL and the fix, exit code 2; no secrets leak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.storage_servers import AZURITE_KEY, new_bucket

SCRIPT = """
def run(mini_batch):
    raise RuntimeError("every mini-batch fails")
"""


def _config(tmp_path: Path, input_url: str, output_url: str, options: dict,
            output_options: dict | None = None, **extra) -> Path:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "score.py").write_text(SCRIPT)
    config = {
        "name": "storage-errors",
        "inputs": [{"name": "table", "type": "tabular", "format": "parquet",
                    "path": input_url, "storage_options": options}],
        "output": {"path": output_url, "storage_options": output_options or options},
        "parallel_run_config": {"source_directory": "src", "entry_script": "score.py",
                                "mini_batch_size": "50 rows", "run_max_try": 1,
                                "process_count_per_node": 1, **extra},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cli(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daskprs", "run", str(path), "--no-progress"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def _put_table(storage) -> None:
    with storage.fs.open(storage.path("in", "part-0.parquet"), "wb") as handle:
        pd.DataFrame({"id": range(100)}).to_parquet(handle)


def test_a_missing_bucket_names_the_url_and_how_to_create_it(storage_servers, tmp_path):
    endpoint = storage_servers["s3"]
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    done = _cli(_config(tmp_path, "s3://no-such-bucket/in/", "s3://no-such-bucket/out",
                        options))

    assert done.returncode == 2, done.stderr
    assert "s3://no-such-bucket/out: the bucket does not exist" in done.stderr
    assert "Create it (aws s3 mb s3://BUCKET) or fix the bucket name" in done.stderr


def test_a_missing_container_names_the_url_and_how_to_create_it(storage_servers, tmp_path):
    options = {"connection_string": storage_servers["azure"].connection_string}
    done = _cli(_config(tmp_path, "az://nocontainer/in/", "az://nocontainer/out", options))

    assert done.returncode == 2, done.stderr
    assert "az://nocontainer/out: the container does not exist" in done.stderr
    assert "Create it (az storage container create -n CONTAINER)" in done.stderr


def test_a_wrong_account_key_is_refused_with_the_fix(storage_servers, tmp_path):
    storage = new_bucket("azure", storage_servers["azure"])
    _put_table(storage)
    wrong = storage.storage_options["connection_string"].replace(AZURITE_KEY,
                                                                 "A" + AZURITE_KEY[1:])
    done = _cli(_config(tmp_path, storage.url("in") + "/", storage.url("out"),
                        {"connection_string": wrong}))

    assert done.returncode == 2, done.stderr
    assert f"{storage.url('out')}: the credentials were refused" in done.stderr
    assert "Check key/secret (S3) or the account key" in done.stderr
    assert AZURITE_KEY[1:] not in done.stderr


def test_an_unreachable_endpoint_names_the_url_and_the_setting(tmp_path):
    options = {"key": "testing", "secret": "testing", "endpoint_url": "http://127.0.0.1:9"}
    done = _cli(_config(tmp_path, "s3://bucket/in/", "s3://bucket/out", options))

    assert done.returncode == 2, done.stderr
    assert "s3://bucket/out: the storage endpoint cannot be reached" in done.stderr
    assert "Check endpoint_url (S3)" in done.stderr


def test_secrets_never_reach_the_logs_or_the_terminal(storage_servers, tmp_path):
    storage = new_bucket("s3", storage_servers["s3"])
    _put_table(storage)
    secret_in_env = "env-secret-Zq81xW"
    secret_literal = "literal-secret-Pk27vN"
    sas_signature = "sig=S3cretSignatureValue"
    input_options = {"key": "testing", "secret": "${env:DASKPRS_TEST_SECRET}",
                     "endpoint_url": storage_servers["s3"]}
    output_options = {"key": "testing", "secret": "testing",
                      "endpoint_url": storage_servers["s3"],
                      "client_kwargs": {"aws_session_token": secret_literal}}
    path = _config(tmp_path, storage.url("in") + "/", storage.url("out"), input_options,
                   output_options,
                   environment_variables={"SERVICE_URL": f"https://x/y?{sas_signature}&sv=1"})
    done = _cli(path, env={"DASKPRS_TEST_SECRET": secret_in_env,
                           "AWS_SECRET_ACCESS_KEY": "aws-env-secret-Hy62"})

    assert done.returncode == 1, done.stderr  # every mini-batch fails
    fs = storage.fs
    logs = [p for p in fs.find(storage.path("out", "logs"))]
    assert any(p.endswith("job_error.txt") for p in logs)
    # every file under logs/, the binary ones too (failed_items.parquet holds input rows)
    texts = {p: fs.cat_file(p).decode("utf-8", errors="replace") for p in logs}
    texts["stdout"], texts["stderr"] = done.stdout, done.stderr
    for where, text in texts.items():
        for secret in (secret_in_env, secret_literal, "aws-env-secret-Hy62",
                       "S3cretSignatureValue"):
            assert secret not in text, (where, secret)
    assert "${env:DASKPRS_TEST_SECRET}" not in texts["stderr"]
