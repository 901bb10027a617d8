"""Demo entry script: classify rows with a scikit-learn model (Azure ParallelRunStep style)."""

import argparse

import joblib
import pandas as pd

from daskprs import EntryScript

FEATURES = [f"f{i}" for i in range(10)]


def init():
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    model = joblib.load(args.model)
    EntryScript().logger.info("model loaded from %s", args.model)


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    probability = model.predict_proba(mini_batch[FEATURES])[:, 1]
    return pd.DataFrame({"id": mini_batch["id"], "prediction": (probability > 0.5).astype(int),
                         "probability": probability.round(4)})
