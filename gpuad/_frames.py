"""Where the user's code is: the first stack frame outside the gpuad package.

Warnings point there (``warnings.warn(..., stacklevel=user_stacklevel())``), so a user sees
the line of their own code that caused one, not a line inside gpuad.
"""
import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside_gpuad(frame):
    return frame.f_code.co_filename.startswith(_PACKAGE)


def user_stacklevel():
    """The ``stacklevel`` that makes a ``warnings.warn`` call in the caller of this function
    name the first frame outside gpuad (1 is the caller itself, 2 its caller, ...). When every
    frame is inside gpuad (``python -m gpuad``), the outermost one."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _inside_gpuad(frame):
        frame, level = frame.f_back, level + 1
    return level
