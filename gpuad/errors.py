"""Exceptions that gpuad raises for device problems and failed gradient checks."""


class DeviceUnavailableError(RuntimeError):
    """A device was asked for that this machine cannot provide; the message says why and the fix."""


class DeviceMismatchError(RuntimeError):
    """An op received tensors on different devices; gpuad never moves data implicitly."""


class GradcheckError(RuntimeError):
    """Analytic and finite-difference gradients disagree; the message gives the worst mismatch."""


class GradientTapeWarning(UserWarning):
    """A GradientTape was used in a way that loses gradients (a watched integer tensor, a
    watched tensor copied out with ``.numpy()`` while recording)."""
