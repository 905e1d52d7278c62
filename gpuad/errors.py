"""Exceptions that gpuad raises for device problems and failed gradient checks."""


class DeviceUnavailableError(RuntimeError):
    """A device was asked for that this machine cannot provide; the message says why and the fix."""


class DeviceMismatchError(RuntimeError):
    """An op received tensors on different devices; gpuad never moves data implicitly."""


class GradcheckError(RuntimeError):
    """Analytic and finite-difference gradients disagree; the message gives the worst mismatch."""
