"""City-scale maps: :func:`map_area` writes an area's probability maps per date window into a
resumable Zarr folder, on a thread pool or any ``concurrent.futures.Executor`` (a Dask cluster
included); :class:`CityMap` answers points and polygons from it in milliseconds.

    from terramind_nyc.maps import map_area, CityMap
    run = map_area("manhattan", when=("2024-06-01", "2024-08-31"), out="manhattan-map")
    CityMap.open("manhattan-map").at(40.7484, -73.9857, radius_m=300)

See ``docs/maps.md``.
"""

from __future__ import annotations

from .citymap import CityMap, MapSummary, fetch_or_map
from .engine import MapRun, map_area

__all__ = ["CityMap", "MapRun", "MapSummary", "fetch_or_map", "map_area"]
