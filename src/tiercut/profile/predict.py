"""Per-op-kind regression of node time on this host, family chosen by measured error.

The seed paper's installation phase (dnn-migration-in-iots, Program 2) uses
"regression functions to create prediction functions for DNN subtasks";
Neurosurgeon (Kang et al., ASPLOS'17) fits one regression per layer type on
the layer's configuration. Here one model is fitted per op kind (``conv2d``,
``linear``, ``batchnorm2d``... or a block class at block granularity) on the
features of :mod:`tiercut.profile.features`, from measured profiles.

Model families (:data:`FAMILIES`, one explicit registry):

- ``linear``: ``t = c0 + sum_k c_k x_k`` over the cost columns (FLOPs,
  bytes, ``dram_bytes``), non-negative coefficients, least squares on the
  *relative* error (rows divided by the measured time);
- ``roofline``: ``t = c0 + max(flops / F, bytes / B)`` -- a fixed cost plus
  the larger of compute and memory time (Williams et al., "Roofline",
  CACM 2009), ``c0, F, B > 0`` fitted on log residuals (robust soft-L1 loss);
- ``powerlaw``: ``log t = a + sum_k b_k log(1 + x_k)`` (captures the rising
  efficiency of bigger kernels), ridge least squares;
- ``linear_knn``: ``linear``, multiplied by ``exp`` of the distance-weighted
  mean log residual of the 5 nearest measured nodes in standardized
  ``log(1 + features)`` space -- the linear part carries the scale (it
  extrapolates), the neighbours carry the efficiency of similar shapes
  (a depthwise vs. a pointwise convolution); its parameters hold the
  training points;
- ``constant``: ``t = geometric mean`` (shape ops: size, getitem, flatten).

For every op kind with at least ``min_samples`` measurements, each family
is scored by cross-validation -- leave-one-model-out when the measurements
come from two or more models, else 3-fold -- on the mean absolute log
ratio of predicted to measured node time plus the mean absolute log ratio of
the held-out models' summed times (so large nodes count); the best family is
refitted on all of them. Op kinds with fewer samples use their group's
model (:data:`~tiercut.profile.features.OP_GROUPS`), groups with too few a
global model. Every fitted model records its cross-validated error.

The design matrix adds one host-dependent column to the node features:
``dram_bytes``, the traffic beyond the host's last-level cache (a 150 MB
classifier weight streams from DRAM even when timed alone; a 2 MB one
stays in cache).

A model also covers only the *shape* range it was fitted on (input and
output bytes, reduction length; :data:`GUARD_COLUMNS`, widened 2x) -- it
may extrapolate in FLOPs, not in kind of kernel. A node outside it (a
transformer's large matrix product when ``linear`` was only seen as a
classifier head) goes to the group model, and then, for
matrix-multiply-class ops, to the host's measured roofline (its ``torch.mm``
or 3x3-convolution FLOP/s and copy bandwidth, :meth:`Predictor.host_roofline`),
for everything else to the global model -- never to unbounded extrapolation.

A node measured in isolation runs with warm caches and without its
neighbours; the whole model is usually a little slower than the sum of its
isolated nodes. :class:`ContextModel` (fitted per granularity on the
training profiles' measured differences) gives each node's extra time
inside the model; the predicted whole-model time of a graph is the sum of
the predicted node times plus their context extra.

The predictor shipped in ``data/default_predictor.json`` was fitted by
``benchmarks/fit_default_predictor.py`` on this project's zoo profiles; its
``host`` says on which machine.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.profile.features import CONV_OPS, FEATURE_NAMES, GEMM_GROUPS, NodeFeatures, graph_features, op_group
from tiercut.profile.host import HostInfo
from tiercut.serialization import json_contract

if TYPE_CHECKING:
    from tiercut.profile.profile_file import Profile

PREDICTOR_SCHEMA_VERSION = 1
PREDICTOR_KIND = "tiercut-predictor"
MIN_SECONDS = 1e-7  # predictions are floored here (no node is free)
RANGE_MARGIN = math.log10(2.0)  # an op model extrapolates at most 2x beyond its data


# --------------------------------------------------------------------- families
#: fitted parameters of a family: a JSON-able mapping of name -> number or list.
Params = Mapping[str, Any]


#: columns of the design matrix: the node features, then ``dram_bytes`` =
#: ``max(0, in + out + param bytes - last-level cache)`` of the predictor's
#: host (traffic that cannot stay in cache between repeats).
DESIGN_COLUMNS = (*FEATURE_NAMES, "dram_bytes")
_LINEAR_COLUMNS = [0, 1, 2, 3, 4, 6]  # every column but the reduction length (a shape, not a cost)
#: columns the fitted-range check looks at: the shape of the work, not its
#: scale (a model extrapolates in FLOPs; it must not in kind of kernel).
GUARD_COLUMNS = [2, 3, 5]


def design_matrix(features: Sequence[NodeFeatures], llc_bytes: float = 0.0) -> np.ndarray:
    """Rows of :data:`DESIGN_COLUMNS` for these nodes on a host with ``llc_bytes`` of last-level cache."""
    base = np.array([f.vector() for f in features], dtype=float).reshape(len(features), len(FEATURE_NAMES))
    traffic = base[:, 2] + base[:, 3] + base[:, 4]
    dram = np.maximum(traffic - float(llc_bytes), 0.0) if llc_bytes > 0 else np.zeros(len(features))
    return np.column_stack([base, dram])


def _flops_bytes(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X[:, 0] + X[:, 1], X[:, 2] + X[:, 3] + X[:, 4]


def _fit_linear(X: np.ndarray, y: np.ndarray) -> Params:
    from scipy.optimize import nnls

    design = np.column_stack([np.ones(len(y)), X[:, _LINEAR_COLUMNS]])
    scale = np.maximum(np.abs(design).max(axis=0), 1e-30)
    coef, _ = nnls((design / scale) / y[:, None], np.ones(len(y)), maxiter=50 * design.shape[1])
    return {"coef": [float(c) for c in coef / scale]}


def _predict_linear(params: Params, X: np.ndarray) -> np.ndarray:
    p = np.asarray(params["coef"], dtype=float)
    return p[0] + X[:, _LINEAR_COLUMNS] @ p[1:]


def _fit_roofline(X: np.ndarray, y: np.ndarray) -> Params:
    from scipy.optimize import least_squares

    flops, nbytes = _flops_bytes(X)
    logy = np.log(y)

    def guess(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.quantile(y[mask] / x[mask], 0.25)) if mask.any() else 1e-15

    theta0 = np.log([max(float(np.min(y)) * 0.5, MIN_SECONDS), max(guess(flops), 1e-18), max(guess(nbytes), 1e-18)])

    def residual(theta: np.ndarray) -> np.ndarray:
        c0, a, b = np.exp(theta)
        return np.log(c0 + np.maximum(a * flops, b * nbytes)) - logy

    fit = least_squares(residual, theta0, loss="soft_l1", f_scale=0.2, max_nfev=400)
    c0, a, b = (float(v) for v in np.exp(fit.x))
    return {"c0_s": c0, "s_per_flop": a, "s_per_byte": b}


def _predict_roofline(params: Params, X: np.ndarray) -> np.ndarray:
    flops, nbytes = _flops_bytes(X)
    return params["c0_s"] + np.maximum(params["s_per_flop"] * flops, params["s_per_byte"] * nbytes)


_RIDGE = 1e-6


def _fit_powerlaw(X: np.ndarray, y: np.ndarray) -> Params:
    design = np.column_stack([np.ones(len(y)), np.log1p(X)])
    gram = design.T @ design + _RIDGE * np.eye(design.shape[1])
    coef = np.linalg.solve(gram, design.T @ np.log(y))
    return {"coef": [float(c) for c in coef]}


def _predict_powerlaw(params: Params, X: np.ndarray) -> np.ndarray:
    p = np.asarray(params["coef"], dtype=float)
    return np.exp(np.clip(p[0] + np.log1p(X) @ p[1:], -40.0, 10.0))


def _fit_constant(X: np.ndarray, y: np.ndarray) -> Params:
    return {"value_s": float(np.exp(np.mean(np.log(y))))}


def _predict_constant(params: Params, X: np.ndarray) -> np.ndarray:
    return np.full(X.shape[0], float(params["value_s"]))


KNN_NEIGHBOURS = 5
_KNN_SOFTENING = 0.1  # weights 1 / (distance + this), distances in standard deviations
_KNN_MAX_POINTS = 4000


def _fit_linear_knn(X: np.ndarray, y: np.ndarray) -> Params:
    if len(y) > _KNN_MAX_POINTS:
        raise ValueError("too many points for the neighbour correction")
    base = _fit_linear(X, y)
    fitted = np.maximum(_predict_linear(base, X), MIN_SECONDS)
    L = np.log1p(X)
    spread = L.std(axis=0)
    spread[spread < 1e-9] = 1.0
    return {
        "coef": base["coef"],
        "spread": [float(v) for v in spread],
        "points": [[float(f"{v:.5g}") for v in row] for row in L],
        "log_residuals": [float(f"{v:.5g}") for v in np.log(y / fitted)],
        "k": min(KNN_NEIGHBOURS, len(y)),
    }


def _predict_linear_knn(params: Params, X: np.ndarray) -> np.ndarray:
    base = np.maximum(_predict_linear(params, X), MIN_SECONDS)
    points = np.asarray(params["points"], dtype=float)
    residuals = np.asarray(params["log_residuals"], dtype=float)
    spread = np.asarray(params["spread"], dtype=float)
    k = int(params["k"])
    L = np.log1p(X) / spread
    P = points / spread
    distance = np.sqrt(((L[:, None, :] - P[None, :, :]) ** 2).sum(axis=2))
    nearest = np.argsort(distance, axis=1)[:, :k]
    d = np.take_along_axis(distance, nearest, axis=1)
    weights = 1.0 / (d + _KNN_SOFTENING)
    correction = (residuals[nearest] * weights).sum(axis=1) / weights.sum(axis=1)
    return base * np.exp(correction)


@dataclass(frozen=True)
class Family:
    """A regression family: how to fit parameters and predict with them."""

    name: str
    fit: Callable[[np.ndarray, np.ndarray], Params]
    predict: Callable[[Params, np.ndarray], np.ndarray]
    description: str


FAMILIES: dict[str, Family] = {
    "linear": Family("linear", _fit_linear, _predict_linear, "c0 + sum c_k x_k, c >= 0, relative least squares"),
    "roofline": Family("roofline", _fit_roofline, _predict_roofline, "c0 + max(flops/F, bytes/B)"),
    "powerlaw": Family("powerlaw", _fit_powerlaw, _predict_powerlaw, "exp(a + sum b_k log(1 + x_k))"),
    "linear_knn": Family(
        "linear_knn",
        _fit_linear_knn,
        _predict_linear_knn,
        "linear, corrected by the distance-weighted mean log residual of the 5 nearest measured nodes",
    ),
    "constant": Family("constant", _fit_constant, _predict_constant, "geometric mean"),
}
DEFAULT_FAMILIES = tuple(FAMILIES)


def _params_finite(params: Params) -> bool:
    def finite(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return all(finite(v) for v in value)
        return isinstance(value, (int, float)) and math.isfinite(value)

    return all(finite(v) for v in params.values())


@dataclass(frozen=True)
class OpModel:
    """A fitted model for one op kind, group, or the global fallback.

    Attributes:
        key: ``op:<kind>``, ``group:<group>`` or ``global``.
        family: name in :data:`FAMILIES`.
        params: fitted parameters of the family (JSON-able mapping).
        n_samples: measurements it was fitted on.
        n_models: distinct models those came from.
        cv_error: cross-validated score of the chosen family (lower is better).
        cv_scores: the score of every family tried.
        log_min, log_max: per design column, the range of ``log10(1 + x)``
            it was fitted on; a node outside it in a :data:`GUARD_COLUMNS`
            column (by more than :data:`RANGE_MARGIN`) is left to the next,
            broader model.
    """

    key: str
    family: str
    params: Params = field(hash=False)
    n_samples: int = 0
    n_models: int = 0
    cv_error: float = math.nan
    cv_scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    log_min: tuple[float, ...] = ()
    log_max: tuple[float, ...] = ()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(FAMILIES[self.family].predict(self.params, X), MIN_SECONDS)

    def covers(self, X: np.ndarray) -> np.ndarray:
        """Row mask: features within the fitted range (widened by :data:`RANGE_MARGIN`)."""
        if not self.log_min:
            return np.ones(X.shape[0], dtype=bool)
        L = np.log10(1.0 + X)
        low = np.asarray(self.log_min) - RANGE_MARGIN
        high = np.asarray(self.log_max) + RANGE_MARGIN
        return np.all((low <= L) & (high >= L), axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "family": self.family,
            "params": dict(self.params),
            "n_samples": self.n_samples,
            "n_models": self.n_models,
            "cv_error": self.cv_error,
            "cv_scores": dict(self.cv_scores),
            "log_min": list(self.log_min),
            "log_max": list(self.log_max),
        }

    @classmethod
    @json_contract("predictor model", hint="refit it with benchmarks/fit_default_predictor.py")
    def from_dict(cls, data: Mapping[str, Any]) -> OpModel:
        family = str(data["family"])
        if family not in FAMILIES:
            raise TiercutError(f"predictor model {data.get('key')!r} has unknown family {family!r}; refit the predictor")
        return cls(
            key=str(data["key"]),
            family=family,
            params=dict(data["params"]),
            n_samples=int(data.get("n_samples", 0)),
            n_models=int(data.get("n_models", 0)),
            cv_error=float(data.get("cv_error", math.nan)),
            cv_scores={str(k): float(v) for k, v in dict(data.get("cv_scores", {})).items()},
            log_min=tuple(float(v) for v in data.get("log_min", ())),
            log_max=tuple(float(v) for v in data.get("log_max", ())),
        )


# --------------------------------------------------------------------- context
@dataclass(frozen=True)
class ContextModel:
    """Extra seconds a node takes inside the whole model compared with alone.

    Timed alone and repeated, a node finds its inputs and weights in cache;
    inside the model its neighbours have just evicted them. Per node the
    extra time is modelled as

    ``per_node_s`` (nodes outside the ``shape`` group)
    ``+ per_io_byte_s * (in_bytes + out_bytes)``
    ``+ per_cached_param_byte_s * min(param_bytes, llc_bytes)``

    -- the last term: weights small enough to stay in the last-level cache
    while the node is repeated alone, but read from memory inside the model.
    The coefficients are fitted by non-negative least squares on the
    training profiles' measured whole-model minus sum-of-nodes differences
    (each relative to its whole-model time).
    """

    per_node_s: float = 0.0
    per_io_byte_s: float = 0.0
    per_cached_param_byte_s: float = 0.0
    llc_bytes: float = 0.0

    def _columns(self, features: Sequence[NodeFeatures]) -> np.ndarray:
        return np.array(
            [
                [
                    float(f.group != "shape"),
                    f.in_bytes + f.out_bytes,
                    min(f.param_bytes, self.llc_bytes) if self.llc_bytes > 0 else 0.0,
                ]
                for f in features
            ],
            dtype=float,
        ).reshape(len(features), 3)

    def weights(self, features: Sequence[NodeFeatures]) -> np.ndarray:
        """Extra seconds per node."""
        coef = np.array([self.per_node_s, self.per_io_byte_s, self.per_cached_param_byte_s])
        return self._columns(features) @ coef

    def to_dict(self) -> dict[str, float]:
        return {
            "per_node_s": self.per_node_s,
            "per_io_byte_s": self.per_io_byte_s,
            "per_cached_param_byte_s": self.per_cached_param_byte_s,
            "llc_bytes": self.llc_bytes,
        }

    @classmethod
    @json_contract("predictor context model", hint="refit it with benchmarks/fit_default_predictor.py")
    def from_dict(cls, data: Mapping[str, Any]) -> ContextModel:
        return cls(**{k: float(data.get(k, 0.0)) for k in ("per_node_s", "per_io_byte_s",
                                                            "per_cached_param_byte_s", "llc_bytes")})


def fit_context(profiles: Sequence[Profile], llc_bytes: float = 0.0) -> ContextModel:
    """Fit :class:`ContextModel` on profiles' whole-model vs sum-of-nodes differences."""
    from scipy.optimize import nnls

    shape = ContextModel(llc_bytes=llc_bytes)
    rows = []
    target = []
    for p in profiles:
        whole = p.whole_model.median_s
        rows.append(shape._columns([n.features for n in p.nodes.values()]).sum(axis=0) / whole)
        target.append((whole - p.sum_of_nodes_s) / whole)
    A = np.array(rows, dtype=float)
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    coef, _ = nnls(A / scale, np.array(target))
    coef = coef / scale
    return ContextModel(
        per_node_s=float(coef[0]),
        per_io_byte_s=float(coef[1]),
        per_cached_param_byte_s=float(coef[2]),
        llc_bytes=float(llc_bytes),
    )


# --------------------------------------------------------------------- predictor
@dataclass(frozen=True)
class Predictor:
    """Predicts a node's isolated seconds on ``host`` from its features.

    Attributes:
        host: the machine the training profiles were measured on.
        models: ``op:<kind>`` / ``group:<group>`` / ``global`` -> fitted model.
        contexts: granularity -> :class:`ContextModel` (in-model extra time).
        trained_on: ``model/granularity`` labels of the training profiles.
        clock: the clock the training profiles were timed with (``wall`` or ``cpu``).
    """

    host: HostInfo
    models: Mapping[str, OpModel]
    contexts: Mapping[str, ContextModel] = field(default_factory=dict, hash=False)
    trained_on: tuple[str, ...] = ()
    clock: str = "wall"

    def __post_init__(self) -> None:
        if "global" not in self.models:
            raise TiercutError("a predictor needs a 'global' fallback model; refit it with fit_predictor")

    def host_roofline(self, op: str) -> OpModel | None:
        """The host's microbenchmark roofline for a matrix-multiply-class op, if measured.

        ``dispatch + max(flops / F, bytes / B)`` with F the host's measured
        convolution (convolutions) or ``torch.mm`` (other products) FLOP/s
        and B its copy bandwidth: the last resort for a product far outside
        every fitted range (e.g. the first large GEMM the predictor sees).
        """
        host = self.host
        flops = host.conv_flops if op in CONV_OPS else host.gemm_flops
        if op_group(op) not in GEMM_GROUPS or flops <= 0 or host.memory_bandwidth_bps <= 0:
            return None
        return OpModel(
            key=f"host:{'conv' if op in CONV_OPS else 'gemm'}",
            family="roofline",
            params={"c0_s": host.dispatch_overhead_s, "s_per_flop": 1.0 / flops, "s_per_byte": 1.0 / host.memory_bandwidth_bps},
        )

    def chain_for(self, op: str) -> list[OpModel]:
        """Models tried for op kind ``op``, narrowest first: its own, its group's, then the
        host roofline (matrix products) or the global model (everything else)."""
        keys = (f"op:{op}", f"group:{op_group(op)}")
        chain = [self.models[k] for k in keys if k in self.models]
        return [*chain, self.host_roofline(op) or self.models["global"]]

    def model_for(self, features: NodeFeatures) -> OpModel:
        """The model that predicts this node: the narrowest whose fitted range covers it."""
        X = design_matrix([features], self.host.llc_bytes)
        chain = self.chain_for(features.op)
        return next((m for m in chain[:-1] if m.covers(X)[0]), chain[-1])

    def context(self, granularity: str) -> ContextModel:
        return self.contexts.get(granularity) or self.contexts.get("module") or ContextModel()

    def predict_many(self, features: Sequence[NodeFeatures]) -> np.ndarray:
        """Isolated seconds on :attr:`host` for each node's features."""
        result = np.full(len(features), np.nan)
        X = design_matrix(features, self.host.llc_bytes)
        by_op: dict[str, list[int]] = {}
        for i, f in enumerate(features):
            by_op.setdefault(f.op, []).append(i)
        for op, rows in by_op.items():
            pending = np.array(rows)
            chain = self.chain_for(op)
            for depth, model in enumerate(chain):
                take = np.ones(len(pending), dtype=bool) if depth == len(chain) - 1 else model.covers(X[pending])
                if take.any():
                    result[pending[take]] = model.predict(X[pending[take]])
                pending = pending[~take]
                if not len(pending):
                    break
        return result

    def predict_s(self, features: NodeFeatures) -> float:
        return float(self.predict_many([features])[0])

    def predict_graph(self, graph: LayerGraph, members_graph: LayerGraph | None = None) -> dict[str, float]:
        """node name -> predicted isolated seconds, every non-input node.

        With ``members_graph`` (the same model at module granularity), a node
        of a coarser ``graph`` (block granularity) is predicted as the sum of
        its members' module-level predictions: a block class is usually
        unique to one architecture, its layers are not.
        """
        feats = graph_features(graph)
        own = dict(zip(feats, (float(v) for v in self.predict_many(list(feats.values()))), strict=True))
        if members_graph is None or members_graph.granularity == graph.granularity:
            return own
        member_s = self.predict_graph(members_graph)
        result: dict[str, float] = {}
        for name in feats:
            parts = [member_s[m] for m in graph[name].members if m in member_s]
            result[name] = float(sum(parts)) if parts else own[name]
        return result

    def predict_whole_s(self, graph: LayerGraph, members_graph: LayerGraph | None = None) -> float:
        """Predicted whole-model seconds: predicted nodes plus their in-model extra time."""
        feats = list(graph_features(graph).values())
        nodes_s = sum(self.predict_graph(graph, members_graph).values())
        return float(nodes_s + self.context(graph.granularity).weights(feats).sum())

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PREDICTOR_SCHEMA_VERSION,
            "kind": PREDICTOR_KIND,
            "host": self.host.to_dict(),
            "trained_on": list(self.trained_on),
            "clock": self.clock,
            "contexts": {g: c.to_dict() for g, c in self.contexts.items()},
            "feature_names": list(FEATURE_NAMES),
            "models": {k: m.to_dict() for k, m in self.models.items()},
        }

    @classmethod
    @json_contract("predictor", version=PREDICTOR_SCHEMA_VERSION, hint="refit it with benchmarks/fit_default_predictor.py")
    def from_dict(cls, data: Any, where: str = "predictor") -> Predictor:
        if data.get("kind") != PREDICTOR_KIND:
            raise TiercutError(f"{where} is not a tiercut predictor; fit one with benchmarks/fit_default_predictor.py")
        if list(data.get("feature_names", FEATURE_NAMES)) != list(FEATURE_NAMES):
            raise TiercutError(f"{where} uses other features than this tiercut; refit the predictor")
        models = {str(k): OpModel.from_dict(m) for k, m in dict(data["models"]).items()}
        return cls(
            host=HostInfo.from_dict(data["host"]),
            models=models,
            contexts={str(k): ContextModel.from_dict(v) for k, v in dict(data.get("contexts", {})).items()},
            trained_on=tuple(str(t) for t in data.get("trained_on", ())),
            clock=str(data.get("clock", "wall")),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def load_predictor(path: str | Path) -> Predictor:
    """Read a predictor JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TiercutError(f"cannot read predictor {path}: {exc.strerror}; check the path") from None
    except json.JSONDecodeError as exc:
        raise TiercutError(f"predictor {path} is not valid JSON (line {exc.lineno}); refit it") from None
    return Predictor.from_dict(data, where=f"predictor {path}")


@functools.cache
def load_default_predictor() -> Predictor:
    """The predictor shipped with tiercut (fitted on the zoo; see its ``host``)."""
    text = resources.files("tiercut.profile").joinpath("data/default_predictor.json").read_text()
    return Predictor.from_dict(json.loads(text), where="shipped predictor")


# --------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class Sample:
    """One measured node: features, isolated median seconds, and which model it came from."""

    features: NodeFeatures
    seconds: float
    source: str


def samples_of(profiles: Sequence[Profile]) -> list[Sample]:
    """Training samples from profiles (one per measured node)."""
    return [
        Sample(n.features, n.median_s, f"{p.model}/{p.granularity}")
        for p in profiles
        for n in p.nodes.values()
    ]


def _score(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    node_error = float(np.mean(np.abs(np.log(pred / y))))
    sums = [abs(math.log(pred[groups == g].sum() / y[groups == g].sum())) for g in np.unique(groups)]
    return node_error + float(np.mean(sums))


def _folds(groups: np.ndarray, seed: int) -> list[np.ndarray]:
    """Held-out masks: one per model (leave-one-model-out) or 3 random folds."""
    unique = np.unique(groups)
    if len(unique) >= 2:
        return [groups == g for g in unique]
    rng = np.random.default_rng(seed)
    labels = rng.permutation(len(groups)) % 3
    return [labels == k for k in range(3)]


def _fit_family(family: Family, X: np.ndarray, y: np.ndarray) -> Params | None:
    try:
        params = family.fit(X, y)
    except (np.linalg.LinAlgError, ValueError, RuntimeError):
        return None
    return params if _params_finite(params) else None


def fit_op_model(
    key: str,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    families: Sequence[str] = DEFAULT_FAMILIES,
    seed: int = 0,
) -> OpModel:
    """Choose the family with the lowest cross-validated score and refit it on everything."""
    scores: dict[str, float] = {}
    folds = _folds(groups, seed) if len(y) >= 3 else []
    for name in families:
        family = FAMILIES[name]
        if not folds:
            params = _fit_family(family, X, y)
            if params is not None:
                pred = np.maximum(family.predict(params, X), MIN_SECONDS)
                scores[name] = _score(pred, y, groups)
            continue
        pred = np.empty(len(y))
        ok = True
        for held in folds:
            train = ~held
            if not train.any():
                ok = False
                break
            params = _fit_family(family, X[train], y[train])
            if params is None:
                ok = False
                break
            pred[held] = np.maximum(family.predict(params, X[held]), MIN_SECONDS)
        if ok and np.all(np.isfinite(pred)):
            scores[name] = _score(pred, y, groups)
    if not scores:
        raise TiercutError(f"no regression family could be fitted for {key}; check the profiles")
    best = min(scores, key=lambda k: scores[k])
    params = _fit_family(FAMILIES[best], X, y)
    if params is None:
        raise TiercutError(f"the {best} family fitted every fold of {key} but not all of it; check the profiles")
    L = np.log10(1.0 + X)
    return OpModel(
        key=key,
        family=best,
        params=params,
        n_samples=len(y),
        n_models=len(np.unique(groups)),
        cv_error=scores[best],
        cv_scores=scores,
        log_min=tuple(float(v) for v in L.min(axis=0)),
        log_max=tuple(float(v) for v in L.max(axis=0)),
    )


def fit_predictor(
    profiles: Sequence[Profile],
    *,
    families: Sequence[str] = DEFAULT_FAMILIES,
    min_samples: int = 8,
    seed: int = 0,
) -> Predictor:
    """Fit per-op, per-group and global models on profiles of one machine.

    Args:
        profiles: :class:`~tiercut.profile.profile_file.Profile` objects, all
            measured on the same machine and thread count.
        families: the families to choose from (names in :data:`FAMILIES`).
        min_samples: fewest measurements for an op kind (or group) to get its own model.
        seed: seed of the 3-fold split used when all samples come from one model.
    """
    if not profiles:
        raise TiercutError("fit_predictor needs at least one profile; run 'tiercut profile' first")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise TiercutError(f"unknown regression family {unknown[0]!r}; choose from {', '.join(FAMILIES)}")
    host = profiles[0].host
    for p in profiles[1:]:
        if not host.same_machine(p.host):
            raise TiercutError(
                f"profile of {p.model!r} was measured on {p.host.name}, not {host.name}; "
                "fit one predictor per machine and thread count"
            )
    clocks = {p.clock for p in profiles}
    if len(clocks) > 1:
        raise TiercutError(f"profiles were timed with different clocks ({', '.join(sorted(clocks))}); use one clock")
    samples = samples_of(profiles)
    X = design_matrix([s.features for s in samples], host.llc_bytes)
    y = np.array([s.seconds for s in samples])
    sources = np.array([s.source.split("/")[0] for s in samples])
    ops = np.array([s.features.op for s in samples])
    op_groups = np.array([s.features.group for s in samples])

    models: dict[str, OpModel] = {"global": fit_op_model("global", X, y, sources, families, seed)}
    for group in sorted(set(op_groups)):
        mask = op_groups == group
        if mask.sum() >= min_samples:
            models[f"group:{group}"] = fit_op_model(f"group:{group}", X[mask], y[mask], sources[mask], families, seed)
    for op in sorted(set(ops)):
        mask = ops == op
        if mask.sum() >= min_samples:
            models[f"op:{op}"] = fit_op_model(f"op:{op}", X[mask], y[mask], sources[mask], families, seed)

    by_granularity: dict[str, list[Any]] = {}
    for p in profiles:
        by_granularity.setdefault(p.granularity, []).append(p)
    return Predictor(
        host=host,
        models=models,
        contexts={g: fit_context(ps, host.llc_bytes) for g, ps in by_granularity.items()},
        trained_on=tuple(f"{p.model}/{p.granularity}" for p in profiles),
        clock=profiles[0].clock,
    )


__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "ContextModel",
    "Family",
    "OpModel",
    "Predictor",
    "Sample",
    "fit_context",
    "fit_op_model",
    "fit_predictor",
    "load_default_predictor",
    "load_predictor",
    "samples_of",
]
