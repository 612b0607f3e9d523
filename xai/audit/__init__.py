"""Model audits: is the model right for the right reasons? (localisation, faithfulness, sanity).

``xai.audit(model, images, labels, masks=...)`` runs every check and returns an
:class:`AuditReport`. ``xai.audit`` is this package made callable (calling it calls
:func:`xai.audit.checks.audit`, also reachable as ``xai.audit.run_audit``), so that the submodules
stay importable as ``xai.audit.localisation`` etc. A plain function re-exported under the package's
name would shadow the package for ``import xai.audit.x as y``.
"""

import sys as _sys
import types as _types

from .checks import THRESHOLDS, audit
from .faithfulness import auc
from .localisation import energy_inside, pointing_game
from .report import AuditReport, Flag
from .sanity import EDGE_DETECTOR, spearman, ssim

run_audit = audit


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
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
    "run_audit",
    "spearman",
    "ssim",
]
