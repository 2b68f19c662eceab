"""Per-node and whole-model latency on this host, measured honestly.

The seed paper's installation phase (dnn-migration-in-iots, Program 1):
"run each DNN subtask, and record the execution time and index of the DNN
subtask". Here a subtask is a layer-graph node:

1. The captured model runs once through a torch.fx ``Interpreter`` that
   keeps every fx node's real output, so each node can later be fed the
   exact tensors it sees in the model.
2. Each layer-graph node becomes a small fx ``GraphModule`` holding the fx
   nodes it owns (``CapturedModel.owner``: one fx node at module
   granularity, the block's nodes at block granularity), with its external
   inputs as placeholders. It is timed alone on (copies of) its recorded
   input tensors, so an in-place op cannot corrupt another node's inputs.
3. The whole ``GraphModule`` is timed the same way on the example input, so
   the difference between the sum of the node medians and the whole-model
   median (dispatch and cache effects of isolation) is known and reported.

Everything runs under ``torch.no_grad()`` at a fixed thread count
(``torch.set_num_threads``, recorded and restored).

Repeat logic (:class:`StoppingRule`, the same for nodes and the whole model):

- ``warmup`` untimed calls first; the last one calibrates ``number``, the
  calls per sample, so that one sample lasts at least ``min_sample_s``
  (short ops are timed in a loop, like ``timeit``, to rise above the
  clock's resolution and call jitter);
- then samples (seconds per call) are taken until, after at least
  ``min_repeats`` samples, the distribution-free confidence interval of the
  median (order statistics, binomial(n, 1/2); ``confidence`` = 95 %) has a
  half-width within ``rel_tolerance`` of the median -- *stable*; or
  ``max_repeats`` samples are taken; or the timed seconds exceed
  ``max_seconds`` (the minimum repeats are always taken). The reason is
  recorded with each timing.

The median is the figure used everywhere (robust to a shared machine's
spikes); the spread reported is the inter-quartile range.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

if TYPE_CHECKING:
    from tiercut.graph.capture import CapturedModel
    from tiercut.graph.types import LayerGraph
    from tiercut.profile.profile_file import Profile

#: progress callback: (done, total, what was just measured)
Progress = Callable[[int, int, str], None]

STOP_REASONS = ("stable", "max_repeats", "time_budget", "merged")


def median_confidence_interval(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median by order statistics.

    For ``n`` sorted samples the interval is ``[x_(j), x_(n+1-j)]`` (1-based)
    with the largest ``j`` such that ``P(Binomial(n, 1/2) <= j - 1) <= (1 -
    confidence) / 2``. Returns ``None`` when ``n`` is too small for any
    interval at that confidence (``n < 6`` at 95 %).
    """
    n = len(samples)
    if n == 0:
        return None
    alpha_half = (1.0 - confidence) / 2.0
    cumulative = 0.0
    j = 0
    for k in range(n + 1):
        cumulative += math.comb(n, k) / 2.0**n
        if cumulative > alpha_half:
            break
        j = k + 1
    if j < 1:
        return None
    ordered = sorted(samples)
    return ordered[j - 1], ordered[n - j]


@dataclass(frozen=True)
class StoppingRule:
    """When to stop repeating a timing (see the module docstring).

    Attributes:
        warmup: untimed calls before sampling (>= 1; the last calibrates ``number``).
        min_repeats: samples always taken.
        max_repeats: samples never exceeded.
        rel_tolerance: stop when the median's CI half-width <= this x median.
        confidence: confidence level of that interval.
        max_seconds: timed seconds after which to stop (once ``min_repeats`` are in).
        min_sample_s: a sample loops the call until it lasts at least this long.
        max_number: cap on calls per sample.
    """

    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 30
    rel_tolerance: float = 0.05
    confidence: float = 0.95
    max_seconds: float = 1.0
    min_sample_s: float = 2e-4
    max_number: int = 1000

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise TiercutError(f"warm-up runs = {self.warmup}; at least 1 is needed to calibrate the timing loop")
        if self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise TiercutError(
                f"repeats must satisfy 1 <= min_repeats ({self.min_repeats}) <= max_repeats ({self.max_repeats}); "
                "raise --repeats"
            )
        if not 0 < self.rel_tolerance < 1 or not 0 < self.confidence < 1:
            raise TiercutError("rel_tolerance and confidence must lie strictly between 0 and 1")
        if self.max_seconds <= 0 or self.min_sample_s < 0 or self.max_number < 1:
            raise TiercutError("max_seconds must be > 0, min_sample_s >= 0 and max_number >= 1")

    def with_max_repeats(self, repeats: int) -> StoppingRule:
        """The same rule capped at ``repeats`` samples (min_repeats lowered if needed)."""
        if repeats < 1:
            raise TiercutError(f"--repeats {repeats} is not positive; use at least 1")
        return replace(self, max_repeats=repeats, min_repeats=min(self.min_repeats, repeats))

    def stop_reason(self, samples: Sequence[float], spent_s: float) -> str | None:
        """Why to stop after these samples (``None``: take another)."""
        n = len(samples)
        if n < self.min_repeats:
            return None
        interval = median_confidence_interval(samples, self.confidence)
        if interval is not None:
            median = _median(samples)
            if median <= 0 or (interval[1] - interval[0]) / 2.0 <= self.rel_tolerance * median:
                return "stable"
        if n >= self.max_repeats:
            return "max_repeats"
        if spent_s >= self.max_seconds:
            return "time_budget"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    @json_contract("stopping rule", hint="re-profile with this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> StoppingRule:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        return cls(**known)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return float(ordered[mid]) if n % 2 else float(ordered[mid - 1] + ordered[mid]) / 2.0


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


@dataclass(frozen=True)
class TimingStats:
    """Repeated timings of one thing, in seconds per call.

    Attributes:
        median_s: median of the samples (the figure used).
        q25_s, q75_s: quartiles; ``spread_s`` is their difference (IQR).
        ci_low_s, ci_high_s: the median's distribution-free confidence
            interval (equal to the min/max when too few samples for one).
        repeats: number of samples.
        number: calls per sample (each sample is the mean of ``number`` calls).
        stop_reason: ``stable``, ``max_repeats``, ``time_budget`` or ``merged``.
        samples_s: the samples themselves.
    """

    median_s: float
    q25_s: float
    q75_s: float
    ci_low_s: float
    ci_high_s: float
    repeats: int
    number: int
    stop_reason: str
    samples_s: tuple[float, ...] = field(default=(), repr=False)

    @property
    def spread_s(self) -> float:
        return self.q75_s - self.q25_s

    @property
    def rel_spread(self) -> float:
        return self.spread_s / self.median_s if self.median_s > 0 else 0.0

    @classmethod
    def from_samples(
        cls, samples: Sequence[float], number: int, stop_reason: str, confidence: float = 0.95
    ) -> TimingStats:
        if not samples:
            raise TiercutError("a timing needs at least one sample")
        values = tuple(float(s) for s in samples)
        interval = median_confidence_interval(values, confidence) or (min(values), max(values))
        return cls(
            median_s=_median(values),
            q25_s=_quantile(values, 0.25),
            q75_s=_quantile(values, 0.75),
            ci_low_s=float(interval[0]),
            ci_high_s=float(interval[1]),
            repeats=len(values),
            number=int(number),
            stop_reason=stop_reason,
            samples_s=values,
        )

    def pooled(self, other: TimingStats) -> TimingStats:
        """Statistics of both sample sets together (for merging profiles)."""
        return TimingStats.from_samples(self.samples_s + other.samples_s, max(self.number, other.number), "merged")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spread_s"] = self.spread_s
        data["samples_s"] = list(self.samples_s)
        return data

    @classmethod
    @json_contract("timing", hint="re-profile with this tiercut")
    def from_dict(cls, data: Mapping[str, Any], where: str = "timing") -> TimingStats:
        stats = cls(
            median_s=float(data["median_s"]),
            q25_s=float(data.get("q25_s", data["median_s"])),
            q75_s=float(data.get("q75_s", data["median_s"])),
            ci_low_s=float(data.get("ci_low_s", data["median_s"])),
            ci_high_s=float(data.get("ci_high_s", data["median_s"])),
            repeats=int(data.get("repeats", 1)),
            number=int(data.get("number", 1)),
            stop_reason=str(data.get("stop_reason", "stable")),
            samples_s=tuple(float(s) for s in data.get("samples_s", ())),
        )
        if not (math.isfinite(stats.median_s) and stats.median_s > 0):
            raise TiercutError(f"{where} has median_s = {stats.median_s!r}; times must be positive seconds")
        if stats.stop_reason not in STOP_REASONS:
            raise TiercutError(f"{where} has stop_reason {stats.stop_reason!r}; expected one of {STOP_REASONS}")
        return stats


#: (callable, calls) -> seconds per call. The default reads the wall clock;
#: tests pass synthetic sequences.
Timer = Callable[[Callable[[], Any], int], float]


def wall_timer(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls (``perf_counter``)."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def cuda_timer(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call on the current CUDA device: CUDA events around ``number`` calls, synchronised.

    Kernel launches return before the GPU has run them, so a host clock would
    time the launches; the events are recorded in the stream and the end
    event is waited for.
    """
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(number):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / number


def cpu_timer(fn: Callable[[], Any], number: int) -> float:
    """CPU seconds of the calling thread per call (``thread_time``): blind to time spent descheduled."""
    start = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - start) / number


#: clock name -> timer. ``wall`` is latency; ``cpu`` (one thread only) is the
#: same on an idle machine and immune to other processes taking the core;
#: ``cuda`` times GPU work with CUDA events (the clock of a CUDA profile).
CLOCKS: dict[str, Timer] = {"wall": wall_timer, "cpu": cpu_timer, "cuda": cuda_timer}


def timer_for(clock: str, threads: int, torch_device: str = "cpu") -> Timer:
    """The timer of ``clock``, checking that it measures latency at ``threads`` threads on ``torch_device``."""
    if clock not in CLOCKS:
        raise TiercutError(f"unknown clock {clock!r}; use one of {', '.join(CLOCKS)}")
    on_gpu = torch_device.startswith("cuda")
    if on_gpu and clock != "cuda":
        raise TiercutError(
            f"a CUDA profile is timed with CUDA events, not the {clock} clock; use --clock cuda (the default on CUDA)"
        )
    if clock == "cuda" and not on_gpu:
        raise TiercutError("the cuda clock times GPU work; use --torch-device cuda, or the wall or cpu clock on the CPU")
    if clock == "cpu" and threads != 1:
        raise TiercutError(
            f"the cpu clock measures one thread's CPU time, but {threads} threads are in use; "
            "use --torch-threads 1 or the wall clock"
        )
    return CLOCKS[clock]


def repeat_until_stable(fn: Callable[[], Any], rule: StoppingRule, timer: Timer | None = None) -> TimingStats:
    """Warm up, calibrate the calls per sample, then sample until ``rule`` says stop."""
    timer = timer or wall_timer
    first = 0.0
    for _ in range(rule.warmup):
        first = timer(fn, 1)
    if first >= rule.min_sample_s:
        number = 1
    else:
        number = min(rule.max_number, max(1, math.ceil(rule.min_sample_s / max(first, 1e-9) - 1e-9)))
    samples: list[float] = []
    spent = 0.0
    while True:
        sample = timer(fn, number)
        samples.append(sample)
        spent += sample * number
        reason = rule.stop_reason(samples, spent)
        if reason is not None:
            return TimingStats.from_samples(samples, number, reason, rule.confidence)


@contextlib.contextmanager
def thread_count(threads: int | None) -> Iterator[int]:
    """Run the block at ``threads`` torch threads (``None``: as now); restores after. Yields the count."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise TiercutError(f"--torch-threads {threads} is not positive; use at least 1")
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------- busy host
#: a profile is "busy" when any of these is exceeded (see :func:`assess_quality`)
BUSY_MEDIAN_REL_SPREAD = 0.15
BUSY_UNSTABLE_FRACTION = 0.25
BUSY_NODE_SUM_EXCESS = 0.20
QUALITY_VERDICTS = ("stable", "busy")


@dataclass(frozen=True)
class ProfileQuality:
    """Whether a profile's numbers can be trusted, and why not.

    Attributes:
        verdict: ``stable`` or ``busy`` (never ``stable`` when any check fails).
        reasons: one line per failed check, with its figure.
        advice: what to do about it.
        load_before, load_after: 1-minute load averages around the measurement (-1: unknown).
        cpus: logical CPUs; threads: torch threads used.
        median_rel_spread: median over the timings of IQR / median.
        unstable_fraction: share of timings that stopped without a stable median.
        node_sum_excess: (sum of node medians - whole model) / whole model.
    """

    verdict: str
    reasons: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    load_before: float = -1.0
    load_after: float = -1.0
    cpus: int = 0
    threads: int = 0
    median_rel_spread: float = 0.0
    unstable_fraction: float = 0.0
    node_sum_excess: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["advice"] = list(self.advice)
        return data

    @classmethod
    @json_contract("profile quality", hint="re-profile with this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileQuality:
        verdict = str(data.get("verdict", ""))
        if verdict not in QUALITY_VERDICTS:
            raise TiercutError(f"profile quality verdict {verdict!r} is not one of {QUALITY_VERDICTS}; re-profile")
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        known["reasons"] = tuple(str(r) for r in data.get("reasons", ()))
        known["advice"] = tuple(str(a) for a in data.get("advice", ()))
        return cls(**known)


def assess_quality(
    timings: Sequence[TimingStats],
    whole: TimingStats,
    *,
    load_before: float = -1.0,
    load_after: float = -1.0,
    cpus: int = 0,
    threads: int = 1,
    clock: str = "wall",
) -> ProfileQuality:
    """Is the host busy? Three independent signs, any one of which makes the profile ``busy``:

    - **load**: the 1-minute load average before or after exceeds the CPUs
      the measurement leaves free (``cpus - threads``) by more than 0.5 --
      other processes want the cores it runs on;
    - **spread**: the median relative IQR of the timings exceeds
      :data:`BUSY_MEDIAN_REL_SPREAD`, or more than :data:`BUSY_UNSTABLE_FRACTION`
      of them never reached a stable median;
    - **gap**: the isolated node medians add up to more than
      :data:`BUSY_NODE_SUM_EXCESS` above the whole-model median (nodes timed
      alone are normally a little *faster* than inside the model, so a large
      positive gap means samples were inflated by interruptions).
    """
    reasons: list[str] = []
    free = max(cpus - threads, 0)
    if cpus > 0:
        for when, load in (("before", load_before), ("after", load_after)):
            if load >= 0 and load > free + 0.5:
                reasons.append(
                    f"load average {load:.2f} {when} profiling on {cpus} CPUs, {free} left free by {threads} thread(s)"
                )
                break
    spreads = [t.rel_spread for t in timings] or [0.0]
    ordered = sorted(spreads)
    median_spread = ordered[len(ordered) // 2]
    unstable = sum(t.stop_reason != "stable" for t in timings) / max(len(timings), 1)
    if median_spread > BUSY_MEDIAN_REL_SPREAD:
        reasons.append(f"median timing spread (IQR/median) {median_spread:.0%} > {BUSY_MEDIAN_REL_SPREAD:.0%}")
    if unstable > BUSY_UNSTABLE_FRACTION:
        reasons.append(f"{unstable:.0%} of the timings never reached a stable median (> {BUSY_UNSTABLE_FRACTION:.0%})")
    total = sum(t.median_s for t in timings)
    excess = (total - whole.median_s) / whole.median_s if whole.median_s > 0 else 0.0
    if excess > BUSY_NODE_SUM_EXCESS:
        reasons.append(f"the nodes timed alone add up to {excess:+.0%} over the whole model (> +{BUSY_NODE_SUM_EXCESS:.0%})")
    advice: list[str] = []
    if reasons:
        if clock != "cpu":
            advice.append("time with the thread's CPU clock, which ignores time slices lost to other processes: "
                          "--clock cpu --torch-threads 1")
        if threads > 1 or (cpus and threads >= cpus):
            advice.append(
                f"use fewer threads than the {cpus} CPUs so other work does not preempt the measurement: --torch-threads 1"
            )
        advice.append("profile on a quiet machine (stop other jobs; check the load with 'uptime') and profile again")
    return ProfileQuality(
        verdict="busy" if reasons else "stable",
        reasons=tuple(reasons),
        advice=tuple(advice),
        load_before=load_before,
        load_after=load_after,
        cpus=cpus,
        threads=threads,
        median_rel_spread=median_spread,
        unstable_fraction=unstable,
        node_sum_excess=excess,
    )


# --------------------------------------------------------------------- node programs
@dataclass
class NodeProgram:
    """One layer-graph node as a runnable fx ``GraphModule`` and its external inputs.

    Attributes:
        name: the layer-graph node.
        module: GraphModule running the node's fx nodes.
        input_fx_nodes: fx node names whose recorded values feed it, in placeholder order.
    """

    name: str
    module: Any
    input_fx_nodes: tuple[str, ...]


def node_programs(captured: CapturedModel) -> dict[str, NodeProgram]:
    """A runnable program per non-input layer-graph node, from the captured fx graph."""
    import torch.fx

    gm = captured.graph_module
    fx_nodes = [n for n in gm.graph.nodes if n.op != "output"]
    members: dict[str, list[Any]] = {}
    for n in fx_nodes:
        if n.op == "placeholder":
            continue
        owner = captured.owner.get(n.name)
        if owner is None:
            raise TiercutError(f"fx node {n.name!r} has no owner in the captured model; re-capture the model")
        members.setdefault(owner, []).append(n)
    programs: dict[str, NodeProgram] = {}
    for node in captured.graph.nodes:
        if node.is_input:
            continue
        own = members.get(node.name)
        if not own:
            raise TiercutError(f"layer-graph node {node.name!r} owns no fx node; re-capture the model")
        own_set = set(own)
        graph = torch.fx.Graph()
        env: dict[Any, Any] = {}
        inputs: list[str] = []
        for fx_node in own:
            for arg in fx_node.all_input_nodes:
                if arg not in own_set and arg not in env:
                    env[arg] = graph.placeholder(arg.name)
                    inputs.append(arg.name)
            env[fx_node] = graph.node_copy(fx_node, env.__getitem__)
        outputs = [env[m] for m in own if any(u not in own_set for u in m.users)] or [env[own[-1]]]
        graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
        programs[node.name] = NodeProgram(node.name, torch.fx.GraphModule(gm, graph), tuple(inputs))
    return programs


def record_fx_values(captured: CapturedModel, inputs: Sequence[Any] | None = None) -> dict[str, Any]:
    """fx node name -> a copy of its value in one run of the captured model on ``inputs`` (default: its
    example inputs); the profiler's per-node inputs and the runtime's export examples.

    Values are copied as they are produced, so a later in-place op (``ReLU(inplace=True)``)
    cannot change what an earlier node is recorded to have output.
    """
    import torch
    import torch.fx

    recorded: dict[str, Any] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            value = super().run_node(n)
            recorded[n.name] = _private_copy(value)
            return value

    with torch.no_grad():
        Recorder(captured.graph_module).run(*(captured.example_inputs if inputs is None else inputs))
    return recorded


def _private_copy(value: Any) -> Any:
    """Tensors cloned, inside plain tuples, lists and dicts too; every other value (``torch.Size``,
    numbers, named tuples) as it is, so its type is the one the exporter and the profiler see."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if type(value) in (tuple, list):
        return type(value)(_private_copy(v) for v in value)
    if type(value) is dict:
        return {k: _private_copy(v) for k, v in value.items()}
    return value


#: the label :func:`profile_calls` gives the whole model's timing (node names never hold a space)
WHOLE_MODEL = "whole model"
#: what a profile times: given the threads in use, (node name, call) per node then (WHOLE_MODEL, call)
Calls = Callable[[int], Iterator[tuple[str, Callable[[], Any]]]]


def profile_calls(
    graph: LayerGraph,
    calls: Calls,
    *,
    input_shapes: tuple[tuple[int, ...], ...],
    repeats: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    rule: StoppingRule | None = None,
    measure_host_roofline: bool = True,
    clock: str = "wall",
    torch_device: str = "cpu",
    timer: Timer | None = None,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Profile:
    """Time what ``calls`` yields with one stopping rule, thread setting and timer: the profile of ``graph``.

    The one method behind :func:`measure_profile` (torch) and
    :func:`~tiercut.profile.onnx_measure.measure_onnx_profile` (onnxruntime):
    the host is described (and its roofline measured), then ``calls(threads)``
    yields each node's call (a node is set up while the previous ones are
    already timed) and last the whole model's, each timed until ``rule``
    stops (:func:`repeat_until_stable`) inside ``context``; the samples'
    quality is assessed against the machine's load.
    """
    import os

    from tiercut.profile.features import graph_features
    from tiercut.profile.host import describe_host, load_average, measure_host
    from tiercut.profile.profile_file import NodeProfile, Profile

    rule = rule or StoppingRule()
    if repeats is not None:
        rule = rule.with_max_repeats(repeats)
    features = graph_features(graph)
    total = len(features) + 1 + int(measure_host_roofline)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    load_before = load_average()
    nodes: dict[str, NodeProfile] = {}
    whole: TimingStats | None = None
    with thread_count(threads) as used:
        timer = timer or timer_for(clock, used, torch_device)
        if measure_host_roofline:
            host = measure_host(used, timer=timer, torch_device=torch_device, timer_name=clock)
            tick("host roofline")
        else:
            host = describe_host(used, torch_device=torch_device)
        with context():
            for name, call in calls(used):
                timing = repeat_until_stable(call, rule, timer)
                if name == WHOLE_MODEL:
                    whole = timing
                else:
                    nodes[name] = NodeProfile(name=name, features=features[name], timing=timing)
                tick(name)
    if whole is None:
        raise TiercutError(f"the profile of {graph.model} timed no whole model; this is a tiercut bug")
    quality = assess_quality(
        [n.timing for n in nodes.values()], whole, load_before=load_before, load_after=load_average(),
        cpus=os.cpu_count() or 0, threads=used, clock=clock,
    )
    return Profile(
        model=graph.model,
        granularity=graph.granularity,
        input_shapes=input_shapes,
        host=host,
        rule=rule,
        nodes=nodes,
        whole_model=whole,
        clock=clock,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        quality=quality,
    )


def measure_profile(
    captured: CapturedModel,
    *,
    repeats: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    rule: StoppingRule | None = None,
    measure_host_roofline: bool = True,
    clock: str | None = None,
    torch_device: str = "cpu",
    timer: Timer | None = None,
) -> Profile:
    """Profile a captured model on this host: every node alone, and the whole model.

    Args:
        captured: a :class:`~tiercut.graph.capture.CapturedModel`.
        repeats: cap on samples per timing (overrides ``rule.max_repeats``).
        threads: torch threads to measure at (``None``: the current setting).
        progress: called after each timing with (done, total, label).
        rule: the stopping rule (default :class:`StoppingRule`).
        measure_host_roofline: also measure the host's GEMM FLOP/s, copy
            bandwidth and dispatch overhead (about a second), needed to
            transfer the measured times to catalog devices.
        clock: ``"wall"`` (latency, the default on the CPU), ``"cpu"`` (the
            calling thread's CPU time; only with one thread -- on a machine
            shared with other processes it keeps their time slices out of the
            samples; on an idle machine both agree) or ``"cuda"`` (CUDA
            events, the default and only clock on a GPU).
        torch_device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when
            available): where the model runs while it is timed.
        timer: time with this instead of ``clock``'s timer (e.g. a worker
            emulating a slower device); ``clock`` still names what it measures.

    Returns:
        a :class:`~tiercut.profile.profile_file.Profile` with its
        :class:`ProfileQuality` (``busy`` and why, or ``stable``).
    """
    import copy

    import torch

    from tiercut.profile.features import graph_features

    device = resolve_torch_device(torch_device)
    clock = clock or ("cuda" if device.startswith("cuda") else "wall")
    if device != "cpu":
        captured = _on_device(captured, device, copy)

    def calls(used: int) -> Iterator[tuple[str, Callable[[], Any]]]:
        programs = node_programs(captured)
        values = record_fx_values(captured)
        for name in graph_features(captured.graph):
            program = programs[name]
            args = tuple(_private_copy(values[i]) for i in program.input_fx_nodes)
            yield name, lambda m=program.module, a=args: m(*a)
        del values
        gm = captured.graph_module
        inputs = tuple(captured.example_inputs)
        yield WHOLE_MODEL, lambda: gm(*inputs)

    return profile_calls(
        captured.graph, calls, input_shapes=tuple(tuple(getattr(x, "shape", ())) for x in captured.example_inputs),
        repeats=repeats, threads=threads, progress=progress, rule=rule, measure_host_roofline=measure_host_roofline,
        clock=clock, torch_device=device, timer=timer, context=torch.no_grad,
    )


def resolve_torch_device(torch_device: str) -> str:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` -> the device to run on, checked (``auto``: CUDA if present)."""
    import torch

    text = (torch_device or "cpu").strip().lower()
    if text == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TiercutError(
                f"--torch-device {torch_device} asks for CUDA, but this torch sees no GPU; use --torch-device cpu or auto"
            )
        index = int(text.partition(":")[2] or torch.cuda.current_device())
        if not 0 <= index < torch.cuda.device_count():
            raise TiercutError(f"--torch-device {torch_device}: there are {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    raise TiercutError(f"--torch-device {torch_device!r} is not known; use cpu, cuda, cuda:N or auto")


def _on_device(captured: CapturedModel, device: str, copy_module: Any) -> CapturedModel:
    """A copy of ``captured`` whose module and example inputs live on ``device``."""
    from dataclasses import replace as dc_replace

    gm = copy_module.deepcopy(captured.graph_module).to(device)
    inputs = tuple(x.to(device) if hasattr(x, "to") else x for x in captured.example_inputs)
    return dc_replace(captured, graph_module=gm, example_inputs=inputs)


__all__ = [
    "BUSY_MEDIAN_REL_SPREAD",
    "BUSY_NODE_SUM_EXCESS",
    "BUSY_UNSTABLE_FRACTION",
    "CLOCKS",
    "STOP_REASONS",
    "NodeProgram",
    "ProfileQuality",
    "Progress",
    "StoppingRule",
    "TimingStats",
    "assess_quality",
    "cpu_timer",
    "cuda_timer",
    "measure_profile",
    "median_confidence_interval",
    "node_programs",
    "record_fx_values",
    "repeat_until_stable",
    "resolve_torch_device",
    "thread_count",
    "timer_for",
    "wall_timer",
]
