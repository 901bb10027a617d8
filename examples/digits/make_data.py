"""Make the digits example's data: scikit-learn's handwritten digits as PNG files, a model.

The 1,797 8x8 images ship with scikit-learn (nothing is downloaded). Half of them train a
classifier (saved with joblib); the other half are written one PNG per image, to be scored
by ``score.py``. ``labels.csv`` holds their true digits, to check the job's output.

Usage: python examples/digits/make_data.py [--out digits-data]
"""

from __future__ import annotations

import argparse
import csv
import os

import joblib
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.svm import SVC

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIXEL_MAX = 16  # load_digits' pixels run from 0 to 16


def to_png_pixels(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit as 8-bit grey levels (0..16 scaled to 0..255)."""
    return np.rint(image * 255 / PIXEL_MAX).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(REPO, "digits-data"),
                        help="folder for images/, labels.csv and model.joblib")
    args = parser.parse_args()
    digits = load_digits()
    half = len(digits.images) // 2
    model = SVC(gamma=0.001, C=10.0)
    model.fit(digits.data[:half], digits.target[:half])
    joblib.dump(model, os.path.join(_folder(args.out), "model.joblib"))
    images = _folder(os.path.join(args.out, "images"))
    with open(os.path.join(args.out, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "label"])
        for number in range(half, len(digits.images)):
            name = f"digit-{number:04d}.png"
            Image.fromarray(to_png_pixels(digits.images[number]), mode="L").save(
                os.path.join(images, name))
            writer.writerow([name, int(digits.target[number])])
    print(f"wrote {len(digits.images) - half} PNG files to {images}, their labels to "
          f"{args.out}/labels.csv and a classifier to {args.out}/model.joblib")


def _folder(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
