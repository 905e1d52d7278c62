"""Where the user's code is: the first stack frame outside the gpuad package.

Warnings point there (``warnings.warn(..., stacklevel=user_stacklevel())``), so a user sees
the line of their own code that caused one, not a line inside gpuad; the anomaly mode notes
it as the place where each forward op ran.
"""
import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def inside_gpuad(frame):
    """Whether ``frame`` runs code of the gpuad package."""
    return frame.f_code.co_filename.startswith(_PACKAGE)


def user_frame(frame):
    """The first frame outside gpuad from ``frame`` up (``frame`` itself if it is outside);
    None if there is none."""
    while frame is not None and inside_gpuad(frame):
        frame = frame.f_back
    return frame


def user_stacklevel():
    """The ``stacklevel`` that makes a ``warnings.warn`` call in the caller of this function
    name the first frame outside gpuad (1 is the caller itself, 2 its caller, ...). When every
    frame is inside gpuad (``python -m gpuad``), the outermost one."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and inside_gpuad(frame):
        frame, level = frame.f_back, level + 1
    return level
