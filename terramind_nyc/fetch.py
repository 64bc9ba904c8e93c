"""Makes ``import terramind_nyc.fetch`` give the :func:`terramind_nyc.fetch` function.

Riprap writes ``import terramind_nyc.fetch`` and then calls ``terramind_nyc.fetch(lat, lon)``.
Python's import system binds the parent package attribute to whatever sits in ``sys.modules``
under the submodule's name once the submodule has executed, so this module replaces its own
entry with the function. ``from terramind_nyc import fetch`` gives the same object.
"""

from __future__ import annotations

import sys

from .api import fetch as _fetch

sys.modules[__name__] = _fetch  # type: ignore[assignment]
