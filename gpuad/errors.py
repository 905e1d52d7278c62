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


class CustomGradientError(ValueError, RuntimeError):
    """A custom gradient rule (``custom_gradient``'s grad_fn, ``Function.backward``) returned
    the wrong number of gradients, or one of the wrong shape or device. It is a ValueError (as
    TensorFlow raises) and a RuntimeError (as PyTorch raises)."""


class OutOfMemoryError(MemoryError, RuntimeError):
    """A CUDA allocation failed; the message has the requested size, the device's free and
    total memory, and the memory pool's used and cached bytes."""


class ForwardModeError(RuntimeError):
    """Forward mode reached an op that has no JVP rule (a custom gradient without one); the
    message names it and says how to give it one."""


class DistributedError(RuntimeError):
    """A collective of ``ad.distributed`` failed: the ranks disagree on what they call (shapes,
    dtypes, ops), a rank is gone, or the group is not set up; the message says which and how to
    fix it."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete within the group's ``timeout``: some rank did not take
    part (it died, hangs, or runs other code). The group is unusable afterwards."""
