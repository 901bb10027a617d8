"""``mini_batch_size``: 1024-based bytes, rows, files; refusals say what was meant."""

from __future__ import annotations

import pytest

from daskprs.sizes import MiniBatchSize, parse_file_size, parse_tabular_size


@pytest.mark.parametrize(("text", "count"), [
    pytest.param("1MB", 1_048_576, id="1MB"),
    pytest.param("1mb", 1_048_576, id="1mb"),
    pytest.param("1Mb", 1_048_576, id="1Mb"),
    pytest.param("10kb", 10_240, id="10kb"),
    pytest.param("10KB", 10_240, id="10KB"),
    pytest.param("2GB", 2 * 1024**3, id="2GB"),
    pytest.param("512", 512, id="digits only"),
    pytest.param(4096, 4096, id="an int"),
    pytest.param("1", 1, id="one byte"),
])
def test_byte_sizes_are_1024_based(text: int | str, count: int) -> None:
    assert parse_tabular_size(text) == MiniBatchSize(count, "bytes")


def test_1mb_is_not_dask_parse_bytes_million() -> None:
    assert parse_tabular_size("1MB").count != 1_000_000
    assert parse_tabular_size("1MB").count == 1024 * 1024


@pytest.mark.parametrize(("text", "count"), [
    pytest.param("5000 rows", 5000, id="5000 rows"),
    pytest.param("5000rows", 5000, id="no space"),
    pytest.param("1 row", 1, id="singular"),
    pytest.param("1 rows", 1, id="one rows"),
    pytest.param("  7   ROWS  ", 7, id="upper case with spaces around"),
    pytest.param("12 Rows", 12, id="capitalised"),
    pytest.param("3\trows", 3, id="a tab"),
])
def test_row_sizes_accept_the_documented_spellings(text: str, count: int) -> None:
    assert parse_tabular_size(text) == MiniBatchSize(count, "rows")


def test_a_parsed_size_prints_as_count_and_unit() -> None:
    assert str(parse_tabular_size("5000 rows")) == "5000 rows"
    assert str(parse_tabular_size("1KB")) == "1024 bytes"
    assert str(parse_file_size(10)) == "10 files"


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("1 MB", "has a space; did you mean '1MB'?", id="1 MB"),
    pytest.param("10 kb", "has a space; did you mean '10kb'?", id="10 kb"),
    pytest.param("1.5MB", "takes whole numbers only; did you mean '1536KB'?", id="1.5MB"),
    pytest.param("0.5GB", "takes whole numbers only; did you mean '512MB'?", id="0.5GB"),
    pytest.param("2.5KB", "takes whole numbers only; did you mean '2560'?", id="2.5KB"),
    pytest.param("ten rows",
                 "must be bytes such as '1MB' or 1048576, or rows such as '5000 rows'",
                 id="ten rows"),
    pytest.param("1MiB",
                 "must be bytes such as '1MB' or 1048576, or rows such as '5000 rows'",
                 id="1MiB"),
    pytest.param("-5", "must be bytes such as '1MB' or 1048576, or rows such as '5000 rows'",
                 id="a negative string"),
    pytest.param("", "must be bytes such as '1MB' or 1048576, or rows such as '5000 rows'",
                 id="empty"),
    pytest.param(True, "must be a size such as '1MB' or '5000 rows', not a bool", id="True"),
    pytest.param(False, "must be a size such as '1MB' or '5000 rows', not a bool", id="False"),
    pytest.param(1.5, "must be an int or a string such as '1MB', not float", id="a float"),
    pytest.param(None, "must be an int or a string such as '1MB', not NoneType", id="None"),
    pytest.param(0, "must be at least 1", id="0 bytes"),
    pytest.param(-1, "must be at least 1", id="-1 bytes"),
    pytest.param("0MB", "must be at least 1", id="0MB"),
    pytest.param("0 rows", "must be at least 1", id="0 rows"),
])
def test_tabular_sizes_that_are_refused_say_what_was_meant(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tabular_size(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(("value", "count"), [
    pytest.param(10, 10, id="an int"),
    pytest.param("10", 10, id="a digit string"),
    pytest.param(" 3 ", 3, id="digits with spaces"),
    pytest.param(1, 1, id="one file"),
])
def test_file_sizes_count_files(value: int | str, count: int) -> None:
    assert parse_file_size(value) == MiniBatchSize(count, "files")


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("1MB", "for file inputs must be a number of files such as 10", id="1MB"),
    pytest.param("10 files", "for file inputs must be a number of files such as 10",
                 id="10 files"),
    pytest.param("5 rows", "for file inputs must be a number of files such as 10", id="rows"),
    pytest.param(2.0, "for file inputs must be a number of files such as 10", id="a float"),
    pytest.param(True, "must be a number of files such as 10, not a bool", id="True"),
    pytest.param(0, "must be at least 1", id="0"),
    pytest.param("0", "must be at least 1", id="'0'"),
    pytest.param(-3, "must be at least 1", id="-3"),
])
def test_file_sizes_that_are_refused_say_what_was_expected(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_file_size(value)  # type: ignore[arg-type]
    assert str(caught.value) == message
