"""Model audits: is the model right for the right reasons? (localisation, faithfulness, sanity)."""

from .localisation import energy_inside, pointing_game

__all__ = ["energy_inside", "pointing_game"]
