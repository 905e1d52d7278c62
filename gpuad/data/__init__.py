"""Small datasets bundled with gpuad (no download).

``digits.csv.gz`` is the handwritten-digits set that scikit-learn ships (from the UCI "Optical
Recognition of Handwritten Digits" data, E. Alpaydin and C. Kaynak, CC BY 4.0): 1,797 images of
8x8 pixels with values 0..16, one row per image, the label last.
"""
import gzip
import pathlib

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent


def load_digits():
    """``(images, labels)``: float32 pixels scaled to [0, 1], shape (1797, 64), and int64
    labels 0..9."""
    with gzip.open(_HERE / "digits.csv.gz", "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return (table[:, :-1] / 16.0).astype(np.float32), table[:, -1].astype(np.int64)
