"""Model audits: is the model right for the right reasons? (localisation, faithfulness, sanity).

``xai.run_audit(model, images, labels, masks=...)`` runs every check and returns an
:class:`AuditReport`; it is a composition of checks (:mod:`.checks`: explanations, faithfulness,
localisation, sanity, flags, gallery), each returning a small result. ``xai.audit(...)`` calls the
same function: this package is made callable for that, because a plain function re-exported under
the package's name would shadow the package for ``import xai.audit.x as y`` (kept working for
compatibility).
"""

import sys as _sys
import types as _types
from typing import Any

from .checks import THRESHOLDS, audit, run_audit
from .faithfulness import auc
from .localisation import energy_inside, pointing_game
from .regions import region_localisation
from .report import AuditReport, Flag
from .sanity import EDGE_DETECTOR, spearman, ssim


class _CallableModule(_types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return run_audit(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule

__all__ = [
    "EDGE_DETECTOR",
    "THRESHOLDS",
    "AuditReport",
    "Flag",
    "audit",
    "auc",
    "energy_inside",
    "pointing_game",
    "region_localisation",
    "run_audit",
    "spearman",
    "ssim",
]
