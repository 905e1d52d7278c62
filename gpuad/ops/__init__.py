"""Every op, defined once with its rules where it is registered (:mod:`.registry`): the
exports here, and the Tensor methods, derive from that registration."""
from typing import TYPE_CHECKING

from . import moves  # noqa: F401  (Tensor.to, cpu, cuda)
from .casts import *  # noqa: F403
from .compare import *  # noqa: F403
from .elementwise import *  # noqa: F403
from .indexing import *  # noqa: F403
from .joining import *  # noqa: F403
from .linalg import *  # noqa: F403
from .methods import install as _install
from .reduction import *  # noqa: F403
from .registry import EXPORTS as _EXPORTS
from .selection import *  # noqa: F403
from .shape import *  # noqa: F403
from .spread import *  # noqa: F403

_install()

if not TYPE_CHECKING:  # (the checker reads the modules' definitions)
    __all__ = list(_EXPORTS)
