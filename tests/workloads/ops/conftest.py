"""Keep hypothesis from writing into the working tree: its example database is off (see
``_support.PROPERTY``) and its other storage (constants cache, failure patches) goes to a
temporary directory that is removed when the session ends."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis.configuration import set_hypothesis_home_dir

if not os.getenv("HYPOTHESIS_STORAGE_DIRECTORY"):
    _home = tempfile.mkdtemp(prefix="recprep-ops-hypothesis-")
    set_hypothesis_home_dir(_home)
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
