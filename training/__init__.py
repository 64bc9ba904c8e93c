"""Training for terramind_nyc: dataset build, datamodule, two-head task, eval gate, export, distillation,
verification before publication.

Run from a checkout as ``python -m training <command>``:

    python -m training build-dataset --out data/nyc --footprints socrata
    python -m training fit --config training/configs/multihead_base.yaml
    python -m training gate --multi runs/multihead_base --lulc runs/lulc_base --buildings runs/buildings_base
    python -m training export runs/multihead_base --out artifacts/terramind-nyc-multihead-base
    python -m training distill --teachers artifacts/nyc-adapters --config training/configs/distill_base.yaml
    python -m training gate --student artifacts/student --teachers artifacts/nyc-adapters --data data/nyc
    python -m training verify artifacts/student --data data/nyc --teachers artifacts/nyc-adapters
    python -m training selfcheck --json
    python -m training synthetic-dataset --out /tmp/smoke --size 224   # data for smoke runs of the tiny configs

This package imports ``terramind_nyc`` and is never imported by it. Importing ``training``
itself is cheap; torch, terratorch and Lightning load in the modules that need them.
"""

from __future__ import annotations

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__: list[str] = []
