"""Per-node seconds on each device: measured here, predicted elsewhere.

The seed paper's installation phase (dnn-migration-in-iots): the client
profiles each DNN subtask (:func:`measure_profile` -> :class:`Profile`,
``file_1``); servers that cannot run the subtasks in advance get their
times from regression on the DNN's and the server's parameters
(:class:`Predictor` per op kind, :func:`roofline_scaled_seconds` by roofline to
the devices of the catalog, ``file_2``); the two are combined into the
``compute_s`` table the planners use (:func:`compute_table`).

Modules: :mod:`.measure` (timing, stopping rule), :mod:`.host` (this
machine), :mod:`.profile_file` (the profile JSON), :mod:`.features` and
:mod:`.predict` (regression), :mod:`.catalog` (devices and their sources),
:mod:`.device_model` (a node's seconds on a catalog device from its achieved
efficiencies), :mod:`.calibrate` (fitting those to measurements taken on the
device), :mod:`.transfer` (roofline scaling from this host, for devices known
only by a speed), :mod:`.table` (the ``compute_s`` table).
"""

from __future__ import annotations

from tiercut.profile.calibrate import calibrate_from_profile, fit_profile, fit_whole_models
from tiercut.profile.catalog import (
    PRECISIONS,
    DeviceSpec,
    PrecisionSpec,
    catalog_document,
    get_device_spec,
    load_catalog,
    load_catalog_file,
    parse_catalog,
)
from tiercut.profile.device_model import device_seconds, op_class
from tiercut.profile.features import NodeFeatures, graph_features, op_group
from tiercut.profile.host import HostInfo, describe_host, measure_host
from tiercut.profile.measure import (
    StoppingRule,
    TimingStats,
    measure_profile,
    median_confidence_interval,
    repeat_until_stable,
)
from tiercut.profile.predict import (
    FAMILIES,
    ContextModel,
    OpModel,
    Predictor,
    fit_predictor,
    load_default_predictor,
    load_predictor,
)
from tiercut.profile.profile_file import NodeProfile, Profile, load_profile, merge_profiles
from tiercut.profile.table import ComputeTable, compute_table
from tiercut.profile.transfer import bound_kinds, roofline_bound_s, roofline_scaled_seconds

__all__ = [
    "FAMILIES",
    "PRECISIONS",
    "ComputeTable",
    "ContextModel",
    "DeviceSpec",
    "HostInfo",
    "NodeFeatures",
    "NodeProfile",
    "OpModel",
    "PrecisionSpec",
    "Predictor",
    "Profile",
    "StoppingRule",
    "TimingStats",
    "bound_kinds",
    "calibrate_from_profile",
    "catalog_document",
    "compute_table",
    "describe_host",
    "device_seconds",
    "fit_predictor",
    "fit_profile",
    "fit_whole_models",
    "get_device_spec",
    "graph_features",
    "load_catalog",
    "load_catalog_file",
    "load_default_predictor",
    "load_predictor",
    "load_profile",
    "measure_host",
    "measure_profile",
    "median_confidence_interval",
    "merge_profiles",
    "op_class",
    "op_group",
    "parse_catalog",
    "repeat_until_stable",
    "roofline_bound_s",
    "roofline_scaled_seconds",
]
