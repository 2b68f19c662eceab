"""Spatial partition: one stack of layers split into tiles run on several devices.

- :mod:`~tiercut.spatial.geometry`: halo arithmetic of one window layer, tile grids and strips;
- :mod:`~tiercut.spatial.stack`: a fused stack's geometry, the regions a tile needs (DeepThings' FTP);
- :mod:`~tiercut.spatial.tiles`: fused stacks of torch models, tile programs, stitching.
"""

from tiercut.spatial.geometry import AxisWindow, Interval, Region, Window, grid_tiles, split_sizes, strip_tiles
from tiercut.spatial.stack import StackGeometry, StackStep, redundant_work

__all__ = [
    "AxisWindow",
    "Interval",
    "Region",
    "StackGeometry",
    "StackStep",
    "Window",
    "grid_tiles",
    "redundant_work",
    "split_sizes",
    "strip_tiles",
]
