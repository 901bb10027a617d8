"""Digits entry script, written for Azure ML's ParallelRunStep: it runs unchanged in daskprs.

``run()`` gets a list of PNG paths and returns one ``"file name,predicted digit"`` line per
image.
"""

import argparse
import os

import joblib
import numpy as np
from PIL import Image

from azureml_user.parallel_run import EntryScript

PIXEL_MAX = 16  # the classifier was trained on load_digits' 0..16 pixels


def init():
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    model = joblib.load(args.model)
    EntryScript().logger.info("model loaded from %s", args.model)


def run(mini_batch):
    logger = EntryScript().logger
    pixels = np.stack([np.asarray(Image.open(path).convert("L"), dtype=np.float64).ravel()
                       for path in mini_batch])
    predictions = model.predict(pixels * PIXEL_MAX / 255)
    logger.info("classified %d images, %s to %s", len(mini_batch),
                os.path.basename(mini_batch[0]), os.path.basename(mini_batch[-1]))
    return [f"{os.path.basename(path)},{digit}"
            for path, digit in zip(mini_batch, predictions, strict=True)]
