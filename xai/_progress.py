"""Progress bars that degrade quietly: tqdm's notebook widget only where it can be drawn.

``tqdm.auto`` picks the notebook widget in every Jupyter kernel and then warns ("IProgress not
found") when ipywidgets is missing; here the plain text bar is used instead, silently.
"""

from __future__ import annotations

from typing import Any


def progress_class() -> Any:
    """``tqdm.notebook.tqdm`` in a Jupyter kernel with ipywidgets, else ``tqdm.std.tqdm``."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and "IPKernelApp" in getattr(shell, "config", {}):
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
    except Exception:  # noqa: BLE001 - no IPython, no kernel or no ipywidgets: the text bar
        pass
    from tqdm.std import tqdm as text_tqdm

    return text_tqdm


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar of :func:`progress_class` (same arguments as ``tqdm``)."""
    return progress_class()(*args, **kwargs)
