"""Attribution methods behind one registry.

``available()`` lists them; ``get(name)`` returns one; ``smooth(base, ...)`` wraps any method in
noise smoothing. Importing this package registers the built-in methods.
"""

from . import cam, gradient  # noqa: F401  (registration side effects)
from .registry import Method, MethodResult, available, get, register
from .smooth import smooth

__all__ = ["Method", "MethodResult", "available", "get", "register", "smooth"]
