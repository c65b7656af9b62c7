"""Suite-wide settings.

On CI (``CI`` set, as `.ci/run` is run) hypothesis draws the same examples on every run, so a
red build always reproduces; on a developer's machine it keeps exploring new ones.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
