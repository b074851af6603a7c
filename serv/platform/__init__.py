"""Platform differences live here and nowhere else: process creation flags, sessions,
signals, exit waiting. `current` is the module for this OS; the rest of the daemon calls
only the functions listed in `posix.__all__` through it.
"""

from __future__ import annotations

import sys
from types import ModuleType

from serv.platform import posix, windows

TAG_VAR = "DYNALAUNCHER_JOB"

current: ModuleType = windows if sys.platform == "win32" else posix
IS_WINDOWS = sys.platform == "win32"
IS_LINUX = sys.platform.startswith("linux")
