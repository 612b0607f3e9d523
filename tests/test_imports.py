"""What ``import xai`` loads: no matplotlib of its own, no command line, no plotting module."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import keras  # Keras 3 itself imports matplotlib.patches when matplotlib is installed
before = {m for m in sys.modules if m.startswith("matplotlib")}
import xai
e = xai.viz.overlay  # the colour functions need no matplotlib
after = {m for m in sys.modules if m.startswith("matplotlib")}
print(sorted(after - before))
print("xai.viz.plot" in sys.modules, "xai.cli" in sys.modules)
xai.viz.figure_grid  # loaded on first use
print("xai.viz.plot" in sys.modules)
"""


def test_import_xai_adds_no_matplotlib_module_and_no_cli():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", out[0]  # xai adds no matplotlib module to what Keras loaded
    assert out[1] == "False False"
    assert out[2] == "True"
