"""The dtypes gpuad exposes (plain NumPy dtypes) and the rules for inferring them."""
import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

half, double, long = float16, float64, int64  # PyTorch spellings

SUPPORTED = (float16, float32, float64, int32, int64, bool_)


def as_dtype(dtype):
    """Normalise a user dtype (string, NumPy type, dtype or None) to a NumPy dtype or None."""
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"gpuad: {dtype!r} is not a dtype; use one of "
            "ad.float16, ad.float32, ad.float64, ad.int32, ad.int64, ad.bool_"
        ) from None


def is_floating(dtype):
    return dtype.kind == "f"


def infer_dtype(data):
    """The dtype `ad.tensor(data)` gets without an explicit dtype.

    Python floats become float32 and ints int64 (PyTorch's defaults); NumPy arrays and NumPy
    scalars keep their dtype.
    """
    if isinstance(data, (np.ndarray, np.generic)):
        return data.dtype
    dt = np.asarray(data).dtype
    if dt.kind == "f":
        return float32
    if dt.kind in "iu":
        return int64
    return dt
