"""The gateway's event-loop stall probe on its own, for a baseline mitmdump:
``mitmdump -s bench/noop_addon.py -s bench/looplag_probe.py --set codexgate_looplag_file=FILE``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addons.looplag import LoopLag  # noqa: E402

addons = [LoopLag()]
