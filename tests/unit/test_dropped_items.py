"""Which items run() dropped, told from its results (issue 13 item 1): matched only when
one result column holds unique item keys and exactly the dropped count is left over."""

from __future__ import annotations

import pandas as pd

from daskprs.outputs.dropped import dropped_files, dropped_rows

PATHS = ["/data/a.png", "/data/b.png", "/data/c.png"]


def test_a_file_whose_name_or_path_is_missing_from_the_results_is_the_dropped_one():
    names = pd.DataFrame({"file": ["a.png", "c.png"], "label": ["cat", "dog"]})
    paths = pd.DataFrame({0: ["/data/b.png", "/data/c.png"]})

    assert dropped_files(names, PATHS, dropped=1) == [1]
    assert dropped_files(paths, PATHS, dropped=1) == [0]


def test_results_that_do_not_name_their_items_identify_nothing():
    scores = pd.DataFrame({0: ["0.5", "0.7"]})

    assert dropped_files(scores, PATHS, dropped=1) is None


def test_a_row_missing_from_a_result_column_of_the_inputs_ids_is_the_dropped_one():
    items = pd.DataFrame({"id": [10, 11, 12, 13], "group": ["a", "a", "b", "b"]})
    named = pd.DataFrame({"id": ["10", "12", "13"], "score": ["1", "2", "3"]})
    listed = pd.DataFrame({"result": ["11", "12"]})

    assert dropped_rows(named, items, dropped=1) == [1]
    assert dropped_rows(listed, items, dropped=2) == [0, 3]


def test_a_match_that_leaves_another_count_than_the_dropped_items_is_not_trusted():
    items = pd.DataFrame({"id": [10, 11, 12, 13]})
    result = pd.DataFrame({"id": ["10", "12"]})

    assert dropped_rows(result, items, dropped=1) is None


def test_keys_that_are_not_unique_identify_nothing():
    items = pd.DataFrame({"group": ["a", "a", "b"]})
    result = pd.DataFrame({"group": ["a", "b"]})

    assert dropped_rows(result, items, dropped=1) is None
