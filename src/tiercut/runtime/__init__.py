"""The runtime: real workers execute the partitions; a client uploads them and queries the partial model.

The migration seed's running phase (dnn-migration-in-iots), for real,
across processes on one machine or across hosts:

- :mod:`tiercut.runtime.codec`: values on the wire (tensors as a header plus
  raw bytes, a few plain values; never pickle);
- :mod:`tiercut.runtime.artifact`: partitions as data-only programs and
  weights (safetensors), rebuilt by a worker without running code it was sent;
- :mod:`tiercut.runtime.store`: what a worker holds (verified partitions,
  weights by content, a size bound, persistence);
- :mod:`tiercut.runtime.protocol` and :mod:`tiercut.runtime.worker`: the gRPC
  service ``tiercut serve`` runs (uploads with confirmation results,
  execution and forwarding, token or mutual-TLS authentication);
- :mod:`tiercut.runtime.links`: each link of the environment emulated in the
  transport (token bucket plus latency), and fault injection;
- :mod:`tiercut.runtime.route`: which device runs which partition of a query,
  and what travels where;
- :mod:`tiercut.runtime.migration`: an upload plan turned into uploads and
  stages; :mod:`tiercut.runtime.client`: the upload thread and the query
  thread; :mod:`tiercut.runtime.session`: local workers and a whole run
  (``tiercut run``);
- :mod:`tiercut.runtime.k8s`: Kubernetes manifests for the workers
  (``tiercut deploy k8s``);
- :mod:`tiercut.runtime.estimator`, :mod:`tiercut.runtime.adapt` and
  :mod:`tiercut.runtime.adaptive`: link estimation from the client's own
  transfers, re-planning with hysteresis, background uploads and switches
  between queries (``tiercut run --adapt``), bandwidth schedules
  (``--link-schedule``).
"""

from tiercut.runtime.adapt import AdaptSettings, HysteresisController, LinkSchedule
from tiercut.runtime.adaptive import AdaptiveClient, AdaptiveRunResult
from tiercut.runtime.artifact import (
    ARTIFACT_FORMATS,
    DEFAULT_FORMAT,
    ArtifactError,
    LoadedProgram,
    PartitionBundle,
    PartitionProgram,
    ProgramManifest,
    build_program,
    load_program,
)
from tiercut.runtime.client import MigrationClient, QueryRecord, RunResult, RunSettings, UploadAttempt
from tiercut.runtime.codec import CodecError, Frame, decode_chunks, decode_frame, encode_chunks, encode_frame
from tiercut.runtime.estimator import EwmaEstimator, LinkEstimates, WindowedEstimator
from tiercut.runtime.links import FaultPlan, LinkShaper, LinkSpec, LinkTable
from tiercut.runtime.migration import MigrationPlan, RuntimeStage, UploadItem, placement_plan, prepare_migration
from tiercut.runtime.protocol import ConfirmationResult, Connection, Credentials, RemoteError
from tiercut.runtime.route import HopRecord, Route, Step
from tiercut.runtime.session import LocalCluster, run_adaptive, run_migration
from tiercut.runtime.store import PartitionStore
from tiercut.runtime.worker import Worker, WorkerConfig, run_worker

__all__ = [
    "ARTIFACT_FORMATS",
    "DEFAULT_FORMAT",
    "AdaptSettings",
    "AdaptiveClient",
    "AdaptiveRunResult",
    "ArtifactError",
    "CodecError",
    "ConfirmationResult",
    "Connection",
    "Credentials",
    "EwmaEstimator",
    "FaultPlan",
    "Frame",
    "HopRecord",
    "HysteresisController",
    "LinkEstimates",
    "LinkSchedule",
    "LinkShaper",
    "LinkSpec",
    "LinkTable",
    "LoadedProgram",
    "LocalCluster",
    "MigrationClient",
    "MigrationPlan",
    "PartitionBundle",
    "PartitionProgram",
    "PartitionStore",
    "ProgramManifest",
    "QueryRecord",
    "RemoteError",
    "Route",
    "RunResult",
    "RunSettings",
    "RuntimeStage",
    "Step",
    "UploadAttempt",
    "UploadItem",
    "WindowedEstimator",
    "Worker",
    "WorkerConfig",
    "build_program",
    "decode_chunks",
    "decode_frame",
    "encode_chunks",
    "encode_frame",
    "load_program",
    "placement_plan",
    "prepare_migration",
    "run_adaptive",
    "run_migration",
    "run_worker",
]
