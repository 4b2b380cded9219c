"""Scenario files: what one simulated run models, validated at load time.

A scenario is a TOML file (see ``simulator/*.toml``) read into the frozen
dataclasses below. Unknown keys, wrong types and out-of-range values are
errors naming the dotted key and the accepted values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import describe as describe_options
from ..config import from_dict, invalid, load_toml, option, set_path, to_dict
from ..errors import ScenarioError
from ..protocols import ProtocolParams

SCENARIO_DIR_ENV = "E2ESCAN_SCENARIO_DIR"
#: How an attack in a scenario searches (see :mod:`e2escan.attacks.evasion`).
AttackMethod = Literal["blackbox", "whitebox"]


@dataclass(frozen=True)
class Population:
    accounts: int = option(200, doc="number of accounts (one device each)", range=(2, None))
    offender_share: float = option(0.05, doc="share of accounts that send known images", range=(0.0, 1.0))
    contact_graph: str = option(
        "small-world", doc="contact graph model", choices=("small-world", "random", "complete")
    )
    mean_contacts: int = option(8, doc="average number of contacts per account", range=(1, None))
    rewire: float = option(0.1, doc="small-world rewiring probability (Watts-Strogatz)", range=(0.0, 1.0))
    group_share: float = option(0.1, doc="share of messages sent to a group of contacts", range=(0.0, 1.0))
    group_size: tuple[int, int] = option((3, 6), doc="smallest and largest group (members besides the sender)", range=(2, None))

    def __post_init__(self) -> None:
        if self.group_size[0] > self.group_size[1]:
            raise ScenarioError(invalid("population.group_size", self.group_size, "smallest above largest",
                                        "[smallest, largest]"))
        if self.mean_contacts >= self.accounts:
            raise ScenarioError(invalid("population.mean_contacts", self.mean_contacts, "not below population.accounts",
                                        f"an integer from 1 to {self.accounts - 1} (population.accounts - 1)"))


@dataclass(frozen=True)
class Traffic:
    messages_per_day: float = option(10.0, doc="messages each account sends per day (the mean)", range=(0.0, None))
    distribution: str = option(
        "poisson", doc="messages per account-day: 'poisson' around the mean, or 'fixed' (exactly the mean, rounded)",
        choices=("poisson", "fixed"),
    )
    image_share: float = option(0.3, doc="share of messages that carry an image", range=(0.0, 1.0))
    forward_share: float = option(
        0.1, doc="share of innocent images that are forwards of a popular (viral) image", range=(0.0, 1.0)
    )
    popular_images: int = option(50, doc="size of the pool of popular innocent images", range=(1, None))
    popularity_exponent: float = option(1.0, doc="Zipf exponent of popularity within the pool", range=(0.0, None))
    offender_activity: float = option(
        1.0, doc="offenders' message rate relative to everybody else's", range=(0.0, None)
    )


@dataclass(frozen=True)
class TransformWeight:
    spec: str = option(doc="a transformation chain, e.g. 'jpeg:quality=70|crop:fraction=0.9' ('none' for none)")
    weight: float = option(1.0, doc="relative weight in the mix", range=(0.0, None))


@dataclass(frozen=True)
class Content:
    corpus: str = option("synthetic", doc="'synthetic' or a directory of images")
    image_size: int = option(128, doc="side of synthetic images in pixels", range=(32, 4096))
    database_size: int = option(100, doc="number of known images whose hashes form the database", range=(1, None))
    offender_known_share: float = option(
        0.5, doc="share of an offender's images drawn from the known images", range=(0.0, 1.0)
    )
    transforms: tuple[TransformWeight, ...] = option(
        default_factory=lambda: (TransformWeight("none", 1.0),),
        doc="transformations applied to an image before it is sent, with weights",
    )
    encoding: str = option("jpeg", doc="how attachments are encoded", choices=("jpeg", "png"))

    def __post_init__(self) -> None:
        if not self.transforms or sum(t.weight for t in self.transforms) <= 0:
            raise ScenarioError(invalid("content.transforms", [to_dict(t) for t in self.transforms],
                                        "no entry with a positive weight",
                                        "at least one entry with a positive weight"))


@dataclass(frozen=True)
class HasherConfig:
    name: str = option("pdq", doc="perceptual hash (see `e2escan hash-eval --help`)")
    params: dict[str, Any] = option(default_factory=dict, doc="hasher parameters, e.g. hash_size = 8")


def _protocol_names() -> tuple[str, ...]:
    from ..protocols import PROTOCOLS

    return tuple(PROTOCOLS)


def _protocol_params(fields: Mapping[str, Any]) -> type[ProtocolParams]:
    from ..protocols import get_protocol

    return get_protocol(fields["name"]).Params


@dataclass(frozen=True)
class ProtocolConfig:
    name: str = option("tpsi-ad", doc="matching protocol (see `e2escan protocols`)", choices=_protocol_names)
    params: ProtocolParams = option(
        None, doc="protocol parameters, e.g. threshold = 30 (the protocol's defaults for the rest)",
        type_from=_protocol_params, serialise=ProtocolParams.non_defaults,
    )

    def __post_init__(self) -> None:
        expected = _protocol_params({"name": self.name})
        if self.params is None:  # built in code without parameters: the protocol's defaults
            object.__setattr__(self, "params", expected())
        elif type(self.params) is not expected:
            raise ScenarioError(invalid("protocol.params", to_dict(self.params), f"not parameters of {self.name}",
                                        f"{expected.__qualname__} (from the registry)"))


@dataclass(frozen=True)
class Review:
    accuracy: float = option(0.95, doc="probability a reviewer labels a flagged account correctly", range=(0.0, 1.0))
    capacity_per_day: int = option(50, doc="flagged accounts reviewers can examine per day", range=(0, None))
    minutes_per_case: float = option(5.0, doc="reviewer minutes per flagged account (for workload)", range=(0.0, None))


@dataclass(frozen=True)
class MessengerConfig:
    header_encryption: bool = option(False, doc="Double Ratchet header encryption")
    spk_rotation_days: float = option(7.0, doc="days between a device's signed-prekey rotations", range=(0.01, None))
    spk_grace_days: float = option(
        2.0, doc="days a device keeps its previous signed prekey for first messages in flight", range=(0.0, None)
    )


@dataclass(frozen=True)
class EvasionAttack:
    """Offenders perturb known images before sending (Jain, Cretu, de Montjoye, USENIX Security 2022)."""

    share: float = option(1.0, doc="share of offenders' known images that are perturbed", range=(0.0, 1.0))
    min_distance: int = option(
        32, doc="Hamming distance from the original the attack aims for (the detection radius + 1)", range=(1, None)
    )
    max_queries: int = option(200, doc="hash computations the attacker may spend per image", range=(1, None))
    min_ssim: float = option(0.9, doc="image quality bound: SSIM with the original at least this", range=(0.0, 1.0))
    method: AttackMethod = option("blackbox", doc="'blackbox' (any hasher) or 'whitebox' (pHash, PDQ)")


@dataclass(frozen=True)
class PoisoningAttack:
    """An adversary controls database entries to find who holds a non-abuse target image (Hooda et al. 2022)."""

    fraction: float = option(0.05, doc="share of the (final) database the adversary controls", range=(0.0, 0.99))
    target: int = option(0, doc="index of the popular innocent image the adversary looks for", range=(0, None))


@dataclass(frozen=True)
class CollisionAttack:
    """An attacker crafts innocent-looking images whose hashes collide with database entries and sends them
    to target accounts, who forward them (Struppek et al. 2022; Prokos et al. 2023)."""

    targets: int = option(5, doc="innocent accounts that receive crafted images", range=(1, None))
    images: int = option(3, doc="crafted images per target (each forwarded once on day 0)", range=(1, None))
    max_queries: int = option(500, doc="hash computations the attacker may spend per crafted image", range=(1, None))
    min_ssim: float = option(0.8, doc="SSIM of a crafted image with its innocent original, at least", range=(-1.0, 1.0))
    method: AttackMethod = option("blackbox", doc="'blackbox' or 'whitebox' (pHash, PDQ)")


@dataclass(frozen=True)
class Attacks:
    evasion: EvasionAttack | None = option(None, doc="detection avoidance by offenders (a table enables it)")
    collision: CollisionAttack | None = option(None, doc="false flags by crafted collisions (a table enables it)")
    poisoning: PoisoningAttack | None = option(None, doc="database poisoning with a target image (a table enables it)")


@dataclass(frozen=True)
class StatisticalConfig:
    calibration: str = option(
        "calibration/pdq-png-128.json",
        doc="calibration file (relative paths are inside simulator/); make one with `e2escan calibrate`",
    )
    chunk_accounts: int = option(2_000_000, doc="accounts simulated per chunk (bounds memory)", range=(1_000, None))
    leakage_sample: int = option(5_000, doc="accounts per class sampled for leakage estimates", range=(10, None))
    false_match_rate: float | None = option(
        None,
        doc="per-image probability that an innocent image matches the database; overrides the calibration "
        "(e.g. a published measurement of the deployed hash)",
        range=(0.0, 1.0),
    )
    tail_model: str = option(
        "bound",
        doc="how the calibration's unrelated-pair FPR is extrapolated below its data: 'bound' (the 95% upper "
        "confidence bound of the exponential fit, bootstrapping the calibration's images: conservative with "
        "its sampling error), 'exponential' (the fit itself: an upper estimate for log-concave tails only in "
        "the infinite-sample limit) or 'normal' (a central estimate); see e2escan.hashing.thresholds",
        choices=("bound", "exponential", "normal"),
    )


@dataclass(frozen=True)
class Scenario:
    name: str = option(doc="short name, used for the results folder")
    description: str = option("", doc="what question this scenario answers")
    seed: int = option(0, doc="root seed of all simulation randomness", range=(0, None))
    days: int = option(1, doc="simulated days", range=(1, None))
    replicates: int = option(1, doc="independent runs (seeds derived from the root seed)", range=(1, None))
    engine: str = option(
        "faithful", doc="'faithful': every image through the real code; 'statistical': calibrated counts at any scale",
        choices=("faithful", "statistical"),
    )
    population: Population = option(default_factory=Population)
    traffic: Traffic = option(default_factory=Traffic)
    content: Content = option(default_factory=Content)
    hasher: HasherConfig = option(default_factory=HasherConfig)
    protocol: ProtocolConfig = option(default_factory=ProtocolConfig)
    review: Review = option(default_factory=Review)
    messenger: MessengerConfig = option(default_factory=MessengerConfig)
    statistical: StatisticalConfig = option(default_factory=StatisticalConfig)
    attacks: Attacks = option(default_factory=Attacks)

    def __post_init__(self) -> None:
        poisoning = self.attacks.poisoning
        if poisoning is not None and poisoning.target >= self.traffic.popular_images:
            raise ScenarioError(invalid("attacks.poisoning.target", poisoning.target, "not below traffic.popular_images",
                                        f"an integer from 0 to {self.traffic.popular_images - 1}"))
        if self.attacks.collision is not None and self.attacks.collision.targets >= self.population.accounts:
            raise ScenarioError(invalid("attacks.collision.targets", self.attacks.collision.targets,
                                        "not below population.accounts",
                                        f"an integer from 1 to {self.population.accounts - 1}"))
        if self.engine == "statistical" and (self.attacks.evasion or self.attacks.poisoning or self.attacks.collision):
            raise ScenarioError(invalid("engine", self.engine, "the statistical path models no attacks",
                                        "\"faithful\" when [attacks] are given"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> Scenario:
        """The scenario of a parsed table; errors name ``source`` (a file), the dotted key and the value."""
        return from_dict(cls, data, error=ScenarioError, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        scenario = cls.from_dict(load_toml(path, error=ScenarioError), source=str(path))
        try:
            validate_components(scenario)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        return scenario

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def with_overrides(self, **dotted: Any) -> Scenario:
        """A copy with dotted keys replaced, e.g. ``{"protocol.params.threshold": 10}``, validated again."""
        data = self.to_dict()
        for key, value in dotted.items():
            data = set_path(data, key, value, error=ScenarioError)
        return Scenario.from_dict(data)


def validate_components(scenario: Scenario) -> None:
    """Check the hasher's name and parameters against its registry, and what a run reads besides the scenario.

    Done when a scenario file is loaded and before a run starts, so a misspelt
    parameter fails before any work, with the dotted key in the message. (The
    protocol's name and parameters are checked when the scenario is built.)
    """
    from ..errors import E2escanError
    from ..hashing import get_hasher

    try:
        get_hasher(scenario.hasher.name, **scenario.hasher.params)
    except TypeError as exc:
        raise ScenarioError(f"hasher.params: {exc}") from None
    except E2escanError as exc:
        raise ScenarioError(f"hasher: {exc}") from None
    validate_inputs(scenario)


def validate_inputs(scenario: Scenario) -> None:
    """Transform specs parse, a directory corpus exists and is large enough, a calibration loads and fits.

    Everything a run reads besides the scenario itself, checked before any
    output folder is touched.
    """
    from ..errors import E2escanError
    from ..images import DirectoryCorpus
    from .content import chain_for

    for i, t in enumerate(scenario.content.transforms):
        try:
            chain_for(t.spec)
        except E2escanError as exc:
            raise ScenarioError(f"content.transforms[{i}].spec: {exc}") from None
    cfg = scenario.content
    if cfg.corpus != "synthetic":
        try:
            size = len(DirectoryCorpus(Path(cfg.corpus)))
        except E2escanError as exc:
            raise ScenarioError(f"content.corpus: {exc}") from None
        need = cfg.database_size + scenario.traffic.popular_images + 1
        if size < need:
            raise ScenarioError(f"content.corpus: {cfg.corpus!r} holds {size} files; the scenario needs at least "
                                f"{need} (database_size + traffic.popular_images + 1)")
    if scenario.engine == "statistical":
        from .statistical import load_calibration

        load_calibration(scenario)


def shipped_scenarios_dir() -> Path:
    """The repository's ``simulator/`` folder (the package is installed from a source checkout)."""
    import os

    env = os.environ.get(SCENARIO_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "simulator"


def resolve_scenario(name_or_path: str | None) -> Path:
    """A path as given, or the name of a shipped scenario (``quickstart`` -> simulator/quickstart.toml)."""
    if name_or_path is None:
        name_or_path = "quickstart"
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    shipped = shipped_scenarios_dir() / (path.stem + ".toml")
    if shipped.exists():
        return shipped
    if path.exists():
        return path
    available = ", ".join(sorted(p.stem for p in shipped_scenarios_dir().glob("*.toml"))) or "none found"
    raise ScenarioError(f"scenario {name_or_path!r}: no such file and no shipped scenario of that name ({available})")


def describe() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc with allowed values) for every scenario field: the reference table in the docs."""
    return describe_options(Scenario)
