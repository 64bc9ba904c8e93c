"""Imagery: from a STAC catalog to a co-registered chip (import the modules; nothing loads here).

- :mod:`.reader` ``read_chip``: the whole stage, and ``read_scl``;
- :mod:`.chip` ``Chip``, ``ModalityProvenance``: what it returns;
- :mod:`.catalog` ``Catalog``, ``get_catalog``; providers in :mod:`.stac_api` and
  :mod:`.local_catalog`; item accessors and the client-side filter in :mod:`.items`;
  signing and token-free URLs in :mod:`.urls`;
- :mod:`.scenes` acquisitions, footprint coverage, S1 pairing, DEM tiles;
  :mod:`.scene_choice` the S2 scene judged on the chip's SCL;
- :mod:`.warp` one asset onto the grid; :mod:`.harmonise` units and mosaics;
- private to the package: ``_tasks`` (the request's I/O pool) and ``_gdal`` (GDAL options
  and HTTP cache).
"""
