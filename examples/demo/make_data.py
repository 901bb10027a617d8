"""Make the demo's data and model: 1,000,000 rows in Parquet files, a scikit-learn model.

Usage: python examples/demo/make_data.py [--rows 1000000] [--files 4] [--out demo-data]
"""

from __future__ import annotations

import argparse
import itertools
import os

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier

FEATURES = [f"f{i}" for i in range(10)]


def make_table(rows: int, seed: int) -> pd.DataFrame:
    """Rows of ten numeric features and a label, with a unique ``id``."""
    features, label = make_classification(n_samples=rows, n_features=len(FEATURES),
                                          n_informative=6, random_state=seed)
    frame = pd.DataFrame(features.astype("float64"), columns=FEATURES)
    frame.insert(0, "id", np.arange(rows, dtype="int64"))
    frame["label"] = label
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--out", default="demo-data")
    args = parser.parse_args()
    table_dir = os.path.join(args.out, "table")
    os.makedirs(table_dir, exist_ok=True)
    frame = make_table(args.rows, seed=7)
    bounds = np.linspace(0, args.rows, args.files + 1).astype(int)
    for number, (start, stop) in enumerate(itertools.pairwise(bounds)):
        frame.iloc[start:stop].drop(columns="label").to_parquet(
            os.path.join(table_dir, f"part-{number}.parquet"), row_group_size=50_000,
            index=False)
    train = make_table(20_000, seed=7)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    model.fit(train[FEATURES], train["label"])
    joblib.dump(model, os.path.join(args.out, "model.joblib"))
    print(f"wrote {args.rows} rows in {args.files} files to {table_dir} and "
          f"{args.out}/model.joblib")


if __name__ == "__main__":
    main()
