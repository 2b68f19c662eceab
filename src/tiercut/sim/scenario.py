"""Scenario files: a simulation described in YAML, validated with pydantic.

A scenario names an environment (a preset or a file), the users (by
default the environment's), how their uploads are planned, and the run's
settings::

    schema_version: 1
    name: two-users
    environment: migration-12          # preset or YAML/JSON file (relative to this file)
    duration_s: 120                    # omit to run until every user is done
    execution: sequential              # or overlapped
    upload_shares_link: true           # uploads compete with query tensors
    default_discipline: ps             # ps (processor sharing) or fifo
    disciplines: {edge1: fifo}
    upload:
      algorithm: recursive-efficiency  # direct | ionn | efficiency | recursive-efficiency | exhaustive | none
      offloading: mincut               # partition planner choosing each user's P1 (per user) ...
      mode: per-user                   # ... or `joint` with a multi-user planner (pso, ga, ...)
      settings: {}                     # upload planner settings
      offloading_settings: {}
      allocation: equal                # joint mode: `optimal` gives each user the optimal shares of the
                                       # servers and links it shares (tiercut.cost.allocation; the jmdp
                                       # planner always does) as processor-sharing weights
    users:                             # omit to take the environment's users
      - name: user1
        device: client1
        model: alexnet                 # zoo name, .onnx or graph JSON file (package.module:factory
                                       # only with `tiercut simulate --allow-code`)
        servers: [edge5]               # devices it may use besides its client (default: all)
        arrivals: {kind: back-to-back} # | {kind: poisson, rate_hz: 2} | {kind: periodic, interval_s: 1}
                                       # | {kind: trace, times_s: [0, 1.5, 2]}; default: Poisson at the
                                       # environment user's query_rate_hz, else back to back
        join_s: 0
        leave_s: 300
        max_queries: 1000
      - name: user2
        problem: user2_problem.json    # a problem JSON ('tiercut plan --json') instead of model + environment
      - name: camera
        plan: tiled.json               # run this 'tiercut plan --json' plan as it is, tiled stages included
                                       # ('tiercut plan --spatial auto'); its upload algorithm must be none
    bandwidth_traces:
      - {a: client1, b: edge5, points: [[0, 10.0e+6], [30, 2.0e+6]]}   # time_s, bytes/s
      - {a: client1, b: cloud1, file: uplink.csv}                       # CSV rows: time_s,bytes_per_s
    controller:                        # optional: PANDA's online control (tiercut.sim.online); needs
      kind: panda                      # duration_s, no uploads (the servers hold the weights) and no mobility
      slot_s: 1.0                      # it decides every user's placement at each multiple of slot_s
      V: [0.1, 1, 10]                  # one simulated run per trade-off value
      energy_budget_j: 0.5             # long-term mean source energy per query (or {user: J, ...})
      frequencies: [0.6, 0.8, 1.0]     # the source's clock levels (fractions of nominal; default [1.0])
      inner: ilp                       # the exact single-user planner behind each slot's hull
      baselines: true                  # also the static optimum and the offline oracle, same trace

A trace sets a symmetric link's one channel, or the ``a -> b`` direction of
a directional link.

Every mistake is one :class:`~tiercut.errors.TiercutError` line naming the
field (``scenario s.yaml: users.0.arrivals.rate_hz: ...``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tiercut.datafiles import read_data_file, read_json_file, read_text_file
from tiercut.errors import TiercutError
from tiercut.graph.models import check_input_shape, data_model_spec
from tiercut.plan.base import DEFAULT_PLANNER
from tiercut.problem import Problem
from tiercut.sim.engine import Simulation
from tiercut.sim.mobility import (
    AttachmentTrace,
    Backhaul,
    Mobility,
    Movement,
    RandomWaypoint,
    ShannonRadio,
    Site,
    WaypointPath,
)
from tiercut.sim.model import (
    ArrivalProcess,
    BackToBack,
    BandwidthTrace,
    Periodic,
    Poisson,
    SimConfig,
    SimUser,
    TraceArrivals,
)
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER
from tiercut.upload.types import UserUploadPlan

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArrivalSpec(_Strict):
    kind: Literal["back-to-back", "poisson", "periodic", "trace"] = "back-to-back"
    think_s: float = Field(default=0.0, ge=0)
    rate_hz: float | None = Field(default=None, gt=0)
    interval_s: float | None = Field(default=None, gt=0)
    times_s: list[float] | None = None

    @model_validator(mode="after")
    def _needs(self) -> ArrivalSpec:
        need = {"poisson": "rate_hz", "periodic": "interval_s", "trace": "times_s"}.get(self.kind)
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"arrivals of kind {self.kind!r} need {need}")
        return self

    def build(self) -> ArrivalProcess:
        if self.kind == "poisson":
            assert self.rate_hz is not None
            return Poisson(self.rate_hz)
        if self.kind == "periodic":
            assert self.interval_s is not None
            return Periodic(self.interval_s)
        if self.kind == "trace":
            return TraceArrivals(tuple(self.times_s or ()))
        return BackToBack(self.think_s)


class UploadSpec(_Strict):
    algorithm: str = DEFAULT_UPLOAD_PLANNER
    offloading: str = DEFAULT_OFFLOADING_PLANNER
    mode: Literal["per-user", "joint"] = "per-user"
    settings: dict[str, Any] = Field(default_factory=dict)
    offloading_settings: dict[str, Any] = Field(default_factory=dict)
    n_queries: int | None = Field(default=None, ge=1)
    allocation: Literal["equal", "optimal"] = "equal"


class UserUploadSpec(_Strict):
    algorithm: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class UserSpec(_Strict):
    name: str = Field(min_length=1)
    device: str | None = None
    model: str | None = None
    input_shape: list[int] | None = None
    granularity: str = "module"
    problem: str | None = None
    plan: str | None = None
    compute_table: str | None = None
    servers: list[str] | None = None
    arrivals: ArrivalSpec | None = None
    join_s: float = Field(default=0.0, ge=0)
    leave_s: float | None = Field(default=None, gt=0)
    max_queries: int | None = Field(default=None, ge=1)
    upload: UserUploadSpec | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _source(self) -> UserSpec:
        if self.problem is not None and (self.model is not None or self.compute_table is not None):
            raise ValueError("give either problem (a problem JSON) or model (with an environment), not both")
        if self.plan is not None and (self.problem is not None or self.model is not None or self.compute_table is not None):
            raise ValueError("a plan file holds its problem: give plan or problem/model, not both")
        if self.leave_s is not None and self.leave_s <= self.join_s:
            raise ValueError(f"leave_s {self.leave_s} must be after join_s {self.join_s}")
        return self


class TraceSpec(_Strict):
    a: str
    b: str
    points: list[tuple[float, float]] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TraceSpec:
        if (self.points is None) == (self.file is None):
            raise ValueError("give a bandwidth trace either points or file")
        return self


class SiteSpec(_Strict):
    server: str = Field(min_length=1)
    x_m: float
    y_m: float


class RandomWaypointSpec(_Strict):
    width_m: float = Field(gt=0)
    height_m: float = Field(gt=0)
    speed_mps: tuple[float, float] = (1.0, 2.0)
    pause_s: tuple[float, float] = (0.0, 0.0)
    seed: int = 0
    start: tuple[float, float] | None = None


class MovementSpec(_Strict):
    waypoints: list[tuple[float, float, float]] | None = None
    random_waypoint: RandomWaypointSpec | None = None
    attachments: list[tuple[float, str, float] | tuple[float, str, float, float]] | None = None

    @model_validator(mode="after")
    def _one(self) -> MovementSpec:
        given = [k for k in ("waypoints", "random_waypoint", "attachments") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give a user's movement exactly one of waypoints, random_waypoint or attachments")
        return self


class RadioSpec(_Strict):
    bandwidth_hz: float = Field(default=20e6, gt=0)
    tx_power_dbm: float = 23.0
    noise_dbm_per_hz: float = -174.0
    noise_figure_db: float = 9.0
    path_loss_db_at_1km: float = 128.1
    path_loss_db_per_decade: float = 37.6
    min_distance_m: float = Field(default=10.0, gt=0)
    efficiency: float = Field(default=1.0, gt=0, le=1)
    max_bytes_per_s: float | None = Field(default=None, gt=0)
    latency_s: float = Field(default=0.01, ge=0)


class BackhaulSpec(_Strict):
    bandwidth_bytes_per_s: float = Field(gt=0)
    latency_s: float = Field(default=0.0, ge=0)


class MobilitySpec(_Strict):
    strategies: list[Literal["static", "reactive", "proactive", "oracle"]] = Field(
        default_factory=lambda: ["static", "reactive", "proactive", "oracle"], min_length=1
    )
    sites: list[SiteSpec] = Field(min_length=1)
    users: dict[str, MovementSpec]
    radio: RadioSpec = Field(default_factory=RadioSpec)
    backhaul: BackhaulSpec | None = None
    step_s: float = Field(default=1.0, gt=0)
    window_s: float = Field(default=5.0, gt=0)
    lookahead_s: float = Field(default=10.0, gt=0)
    predictor: Literal["heading", "markov"] = "heading"
    prefetch_fraction: float = Field(default=1.0, gt=0, le=1)

    def build(self) -> Mobility:
        movements: dict[str, Movement] = {}
        for name, m in self.users.items():
            if m.waypoints is not None:
                movements[name] = WaypointPath(tuple((float(t), float(x), float(y)) for t, x, y in m.waypoints))
            elif m.random_waypoint is not None:
                movements[name] = RandomWaypoint(**m.random_waypoint.model_dump())
            else:
                movements[name] = AttachmentTrace(tuple((float(p[0]), p[1], *(float(v) for v in p[2:]))  # type: ignore[misc]
                                                        for p in m.attachments or ()))  # fmt: skip
        return Mobility(
            sites=tuple(Site(s.server, s.x_m, s.y_m) for s in self.sites),
            users=movements,
            radio=ShannonRadio(**self.radio.model_dump()),
            step_s=self.step_s,
            window_s=self.window_s,
            lookahead_s=self.lookahead_s,
            predictor=self.predictor,
            backhaul=None if self.backhaul is None else Backhaul(**self.backhaul.model_dump()),
        )


class ControllerSpec(_Strict):
    """An online controller choosing every user's placement once per slot (:mod:`tiercut.sim.online`)."""

    kind: Literal["panda"] = "panda"
    slot_s: float = Field(gt=0)
    V: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(min_length=1)
    energy_budget_j: Annotated[float, Field(gt=0, allow_inf_nan=False)] | dict[
        str, Annotated[float, Field(gt=0, allow_inf_nan=False)]]
    frequencies: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [1.0], min_length=1)
    inner: str = DEFAULT_PLANNER
    baselines: bool = True

    def build(self) -> Any:
        from tiercut.sim.online import PandaControl

        budget = dict(self.energy_budget_j) if isinstance(self.energy_budget_j, dict) else float(self.energy_budget_j)
        return PandaControl(float(self.slot_s), tuple(float(v) for v in self.V), budget,
                            tuple(float(f) for f in self.frequencies), self.inner, self.baselines)


class ScenarioSpec(_Strict):
    schema_version: Literal[1]
    name: str = ""
    description: str = ""
    environment: str | None = None
    duration_s: float | None = Field(default=None, gt=0)
    execution: Literal["sequential", "overlapped"] = "sequential"
    upload_shares_link: bool = True
    default_discipline: Literal["ps", "fifo"] = "ps"
    disciplines: dict[str, Literal["ps", "fifo"]] = Field(default_factory=dict)
    record_ops: bool = False
    seed: int = 0
    upload: UploadSpec = Field(default_factory=UploadSpec)
    users: list[UserSpec] | None = None
    bandwidth_traces: list[TraceSpec] = Field(default_factory=list)
    mobility: MobilitySpec | None = None
    controller: ControllerSpec | None = None

    @model_validator(mode="after")
    def _mobile(self) -> ScenarioSpec:
        if self.mobility is not None and self.duration_s is None:
            raise ValueError("a scenario with mobility needs duration_s (movements are sampled over it)")
        if self.mobility is not None and self.upload.mode == "joint":
            raise ValueError("mobility strategies plan each user on its own; use upload mode per-user")
        if self.controller is not None:
            if self.duration_s is None:
                raise ValueError("a scenario with a controller needs duration_s (it decides once per slot over it)")
            if self.mobility is not None:
                raise ValueError("a controller and mobility are not simulated together; drop one")
            if self.upload.mode == "joint" or ("algorithm" in self.upload.model_fields_set and self.upload.algorithm != "none"):
                raise ValueError("the controller chooses every user's placement each slot (no uploads are planned); "
                                 "drop the upload section or set upload.algorithm none")  # fmt: skip
            if any(u.plan is not None for u in self.users or []):
                raise ValueError("the controller chooses every user's placement each slot; drop the users' plan files")
        return self


def _one_line(exc: ValidationError, label: str) -> TiercutError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return TiercutError(f"scenario {label}: {where}: {message}")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario and the folder its relative paths are resolved from.

    ``allow_code``: the command line said ``--allow-code``, so a user's
    ``model:`` may be ``package.module:factory`` (imported and called);
    otherwise a scenario names zoo models, ``.onnx`` and graph JSON files only.
    """

    spec: ScenarioSpec
    base_dir: Path
    label: str
    allow_code: bool = False

    def path(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else self.base_dir / path


def parse_scenario(
    data: Any, label: str = "<scenario>", base_dir: Path | None = None, *, allow_code: bool = False
) -> Scenario:
    """Validate a parsed YAML/JSON mapping as a scenario."""
    if not isinstance(data, dict):
        raise TiercutError(f"scenario {label} is not a mapping; start it with 'schema_version: 1'")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise TiercutError(f"scenario {label}: schema_version is {data.get('schema_version')!r}; this tiercut reads 1")
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, label) from None
    base = base_dir or Path.cwd()
    for i, user in enumerate(spec.users or []):
        if user.model is not None:
            data_model_spec(user.model, where=f"scenario {label}: users.{i}", allow_code=allow_code, base_dir=base)
        if user.input_shape is not None:
            check_input_shape(tuple(user.input_shape), f"of scenario {label} users.{i}")
    return Scenario(spec, base, label, allow_code)


def load_scenario(path: str | Path, *, allow_code: bool = False) -> Scenario:
    """Read and validate a scenario YAML (or JSON) file (``allow_code``: see :class:`Scenario`)."""
    path = Path(path)
    data = read_data_file(path, "scenario")  # bounded safe YAML (or JSON): data only
    return parse_scenario(data, str(path), path.parent, allow_code=allow_code)


# ---------------------------------------------------------------- building
@dataclass(frozen=True)
class BuiltScenario:
    """A scenario turned into a simulation, with the plans it made on the way.

    Attributes:
        name: the scenario's name.
        simulation: ready to :meth:`~tiercut.sim.Simulation.run`.
        problems: user -> its problem.
        plans: user -> its upload plan (None when ``algorithm: none``, and under mobility).
        mobility: the scenario's mobility (None: users stay put); ``simulation`` is then a
            :class:`~tiercut.sim.mobile.MobileSimulation` of the first strategy.
        strategies: the hand-over strategies to compare (:mod:`tiercut.sim.strategies`).
        control: the scenario's online controller (:class:`tiercut.sim.online.PandaControl`; None: the
            placements are planned once, as above); ``simulation`` then holds its users and config.
    """

    name: str
    simulation: Simulation
    problems: dict[str, Problem]
    plans: dict[str, UserUploadPlan | None]
    mobility: Mobility | None = None
    strategies: tuple[Any, ...] = ()
    control: Any = None


def _read_json(path: Path, what: str) -> Any:
    return read_json_file(path, what)


def _read_trace_csv(path: Path) -> list[tuple[float, float]]:
    rows = list(csv.reader(read_text_file(path, "bandwidth trace").splitlines()))
    points = []
    for i, row in enumerate(rows, 1):
        if not row or row[0].strip().startswith("#"):
            continue
        try:
            points.append((float(row[0]), float(row[1])))
        except (ValueError, IndexError):
            if i == 1:
                continue  # a header line
            raise TiercutError(f"bandwidth trace {path} line {i}: want 'time_s,bandwidth_bytes_per_s'") from None
    return points


def _user_problem(scenario: Scenario, user: UserSpec, env: Any, graphs: dict[tuple, Any], joint: bool) -> Problem:
    """The user's problem: from its problem file, or its model over the environment (its client and
    servers; every device in joint mode, where the multi-user planner needs one shared environment)."""
    from tiercut.problem import build_problem

    label = scenario.label
    if user.plan is not None:
        return _user_plan(scenario, user)[0]
    if joint and user.servers is not None:
        raise TiercutError(
            f"scenario {label}: user {user.name!r} lists servers, but in joint mode the multi-user planner chooses them; drop it"
        )
    if user.problem is not None:
        data = _read_json(scenario.path(user.problem), f"problem of user {user.name!r}")
        if isinstance(data, dict) and "problem" in data:
            data = data["problem"]
        problem = Problem.from_dict(data)
        if user.device is not None and user.device != problem.source:
            raise TiercutError(
                f"scenario {label}: user {user.name!r} is on {user.device!r} but its problem's source is {problem.source!r}"
            )
        if user.servers is not None:
            problem = problem.restricted_to([problem.source, *user.servers])
        return problem
    if env is None:
        raise TiercutError(f"scenario {label}: user {user.name!r} has a model but the scenario names no environment")
    model = user.model
    device = user.device
    if model is None or device is None:
        known = {u.name: u for u in env.users}
        if user.name not in known:
            raise TiercutError(
                f"scenario {label}: user {user.name!r} needs a model and a device (or a problem file), "
                f"or must be a user of environment {env.name!r}"
            )
        model = model or known[user.name].model
        device = device or known[user.name].device
    env.device(device)
    if joint:
        servers = [d for d in env.device_names if d != device]
    elif user.servers is not None:
        servers = list(user.servers)
    else:
        servers = [d for d in env.device_names if d != device and env.link(device, d)]
    for server in servers:
        env.device(server)
    model = data_model_spec(
        model, where=f"scenario {label}: user {user.name!r}", allow_code=scenario.allow_code, base_dir=scenario.base_dir
    )
    key = (model, tuple(user.input_shape or ()), user.granularity)
    if key not in graphs:
        from tiercut.pipeline.model import graph as graph_step  # the pipeline's one way from a model spec to a graph

        shape = tuple(user.input_shape) if user.input_shape else None
        graphs[key] = graph_step(
            model, input_shape=shape, granularity=user.granularity,
            allow_code=scenario.allow_code,  # data_model_spec above admitted code only with --allow-code
        )
    compute = None
    if user.compute_table is not None:
        data = _read_json(scenario.path(user.compute_table), f"compute table of user {user.name!r}")
        compute = data.get("compute_s", data) if isinstance(data, dict) else data
    return build_problem(graphs[key], env, source=device, devices=[device, *servers], compute_s=compute)


def _user_plan(scenario: Scenario, user: UserSpec) -> tuple[Problem, Any]:
    """The problem and plan (tiled or not) of a user's ``plan`` file (``tiercut plan --json``)."""
    from tiercut.plan.spatial import plan_from_json

    data = _read_json(scenario.path(user.plan or ""), f"plan of user {user.name!r}")
    if not isinstance(data, dict) or not isinstance(data.get("problem"), dict) or not isinstance(data.get("plan"), dict):
        raise TiercutError(f"scenario {scenario.label}: user {user.name!r}: the plan file must hold the 'problem' and "
                           "'plan' of 'tiercut plan --json'")  # fmt: skip
    problem, plan = plan_from_json(data)
    if user.device is not None and user.device != problem.source:
        raise TiercutError(
            f"scenario {scenario.label}: user {user.name!r} is on {user.device!r} but its plan's source is {problem.source!r}"
        )
    return problem, plan


def build_scenario(scenario: Scenario) -> BuiltScenario:
    """Plan every user's uploads and assemble the :class:`~tiercut.sim.Simulation`."""
    from tiercut.env import load_environment
    from tiercut.plan import get_planner
    from tiercut.problem import MultiUserProblem, UserProblem
    from tiercut.upload.multi import plan_multi_upload, plan_user_upload

    spec = scenario.spec
    env = None
    if spec.environment is not None:
        candidate = scenario.path(spec.environment)
        env = load_environment(str(candidate) if candidate.exists() else spec.environment)
    user_specs = spec.users
    if user_specs is None:
        if env is None or not env.users:
            raise TiercutError(f"scenario {scenario.label} has no users; list them, or name an environment with users")
        user_specs = [
            UserSpec(name=u.name, device=u.device, model=u.model,
                     input_shape=list(u.input_shape) if u.input_shape else None)
            for u in env.users
        ]
    names = [u.name for u in user_specs]
    if len(set(names)) != len(names):
        raise TiercutError(f"scenario {scenario.label}: two users share a name; rename one")
    mobility = None
    if spec.mobility is not None:
        mobility, strategies = _mobility(scenario, user_specs)
        sites = list(mobility.servers)
        user_specs = [u.model_copy(update={"servers": sites}) for u in user_specs]
    graphs: dict[tuple, Any] = {}
    upload = spec.upload
    joint = upload.mode == "joint"
    problems = {u.name: _user_problem(scenario, u, env, graphs, joint) for u in user_specs}

    plans: dict[str, UserUploadPlan | None] = {}
    placements: dict[str, dict[str, str]] = {}
    tiles: dict[str, tuple[Any, ...]] = {}
    for user in user_specs:  # a user with a plan file runs that plan as it is
        if user.plan is None or mobility is not None:
            continue
        algorithm = (user.upload.algorithm if user.upload and user.upload.algorithm else None) or upload.algorithm
        if algorithm != "none" or joint:
            raise TiercutError(f"scenario {scenario.label}: user {user.name!r} runs a given plan; set its upload "
                               "algorithm none (per-user mode): the simulator runs a plan file as it is")  # fmt: skip
        _, given = _user_plan(scenario, user)
        placements[user.name] = dict(given.placement)
        plans[user.name] = None
        tiles[user.name] = tuple(getattr(given, "stages", ()))
    shares: dict[str, dict[str, float]] = {}
    if upload.allocation == "optimal" and not (joint and upload.algorithm == "none"):
        raise TiercutError(f"scenario {scenario.label}: upload.allocation optimal shares servers among jointly planned "
                           "users; set upload.mode joint and upload.algorithm none")
    if joint:
        multi = MultiUserProblem(tuple(UserProblem(n, problems[n]) for n in names), name=spec.name)
        if upload.algorithm == "none":
            offload = get_planner(upload.offloading, **upload.offloading_settings).solve_multi(multi)
            placements = {u: dict(p) for u, p in offload.placements.items()}
            plans = dict.fromkeys(names)
            chosen = offload.shares
            if chosen is None and upload.allocation == "optimal":
                from tiercut.cost.allocation import allocate

                chosen = allocate(multi, placements).shares
            if chosen is not None:
                from tiercut.sim.model import user_shares

                shares = {n: user_shares(chosen, n) for n in names}
        else:
            multi_plan = plan_multi_upload(
                multi, upload.algorithm, offloading=upload.offloading, offloading_settings=upload.offloading_settings,
                n_queries=upload.n_queries, **upload.settings,
            )
            plans = dict(multi_plan.users)
    elif mobility is None:
        planner = get_planner(upload.offloading, **upload.offloading_settings)
        for user in user_specs:
            if user.plan is not None or spec.controller is not None:  # a controller places each user every slot
                plans.setdefault(user.name, None)
                continue
            problem = problems[user.name]
            placement = dict(planner.solve(problem).placement)
            placements[user.name] = placement
            algorithm = (user.upload.algorithm if user.upload and user.upload.algorithm else None) or upload.algorithm
            if algorithm == "none":
                plans[user.name] = None
                continue
            settings = {**upload.settings, **(user.upload.settings if user.upload else {})}
            plans[user.name] = plan_user_upload(
                user.name, problem, placement, algorithm, n_queries=upload.n_queries, settings=settings
            )

    traces = []
    for trace in spec.bandwidth_traces:
        points = trace.points if trace.points is not None else _read_trace_csv(scenario.path(trace.file or ""))
        traces.append(BandwidthTrace(trace.a, trace.b, tuple((float(t), float(b)) for t, b in points)))
    config = SimConfig(
        duration_s=spec.duration_s,
        execution=spec.execution,
        upload_shares_link=spec.upload_shares_link,
        disciplines=dict(spec.disciplines),
        default_discipline=spec.default_discipline,
        traces=tuple(traces),
        record_ops=spec.record_ops,
    )
    env_rates = {u.name: u.query_rate_hz for u in env.users} if env is not None else {}

    def arrivals(user: UserSpec) -> ArrivalProcess:
        if user.arrivals is not None:
            return user.arrivals.build()
        if user.name in env_rates:
            return Poisson(env_rates[user.name])
        return BackToBack()

    users = [
        SimUser(
            name=u.name,
            problem=problems[u.name],
            plan=plans.get(u.name),
            placement=placements.get(u.name) if plans.get(u.name) is None else None,
            tiled_stages=tiles.get(u.name, ()),
            arrivals=arrivals(u),
            join_s=u.join_s,
            leave_s=u.leave_s,
            max_queries=u.max_queries,
            seed=u.seed if u.seed is not None else spec.seed + i,
            shares=shares.get(u.name, {}),
        )
        for i, u in enumerate(user_specs)
    ]
    if mobility is not None:
        from tiercut.sim.mobile import MobileSimulation

        plans = dict.fromkeys(names)
        mobile = MobileSimulation(users, config, mobility, strategies[0])
        try:
            mobile.check()
            for user in users:
                from tiercut.sim.mobility import mobile_problem

                mobile_problem(user.problem, mobility)
        except TiercutError as exc:
            raise TiercutError(f"scenario {scenario.label}: {exc}") from None
        return BuiltScenario(spec.name or scenario.label, mobile, problems, plans, mobility, strategies)
    simulation = Simulation(users, config)
    simulation.check()
    return BuiltScenario(spec.name or scenario.label, simulation, problems, plans, control=_controller(scenario, users))


def _controller(scenario: Scenario, users: list[SimUser]) -> Any:
    """The scenario's online controller (:class:`tiercut.sim.online.PandaControl`), None without one."""
    if scenario.spec.controller is None:
        return None
    try:
        control = scenario.spec.controller.build()
        for user in users:
            control.budget(user.name)
    except TiercutError as exc:
        raise TiercutError(f"scenario {scenario.label}: controller: {exc}") from None
    return control


def mobility_strategy(scenario: Scenario, name: str) -> Any:
    """The hand-over strategy ``name`` with the scenario's planners (its upload section) and mobility settings."""
    from tiercut.sim.strategies import get_strategy

    upload = scenario.spec.upload
    settings: dict[str, Any] = dict(offloading=upload.offloading, upload=upload.algorithm,
                                    offloading_settings=dict(upload.offloading_settings),
                                    upload_settings=dict(upload.settings))  # fmt: skip
    if name == "proactive" and scenario.spec.mobility is not None:
        settings["prefetch_fraction"] = scenario.spec.mobility.prefetch_fraction
    return get_strategy(name, **settings)


def _mobility(scenario: Scenario, user_specs: list[UserSpec]) -> tuple[Mobility, tuple[Any, ...]]:
    """The scenario's :class:`Mobility` and its strategies (planned with the scenario's upload section)."""
    spec, label = scenario.spec, scenario.label
    assert spec.mobility is not None
    for user in user_specs:
        if user.plan is not None or user.servers is not None:
            raise TiercutError(f"scenario {label}: user {user.name!r}: under mobility the strategies choose the servers "
                               "(the mobility sites) and plan; drop its plan/servers")  # fmt: skip
    if spec.upload.algorithm == "none":
        raise TiercutError(f"scenario {label}: mobility strategies upload partitions; give upload.algorithm (not none)")
    try:
        mobility = spec.mobility.build()
    except TiercutError as exc:
        raise TiercutError(f"scenario {label}: mobility: {exc}") from None
    strategies = tuple(mobility_strategy(scenario, name) for name in dict.fromkeys(spec.mobility.strategies))
    return mobility, strategies


__all__ = ["SCHEMA_VERSION", "BuiltScenario", "ControllerSpec", "Scenario", "ScenarioSpec", "build_scenario", "load_scenario",
           "mobility_strategy", "parse_scenario"]
