"""Every configuration file e2escan reads goes through one declarative loader (e2escan.config).

For each kind of file, a wrong key, a wrong type and an out-of-range value each give one line that
names the file, the dotted key, the value and what is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2escan import reproduction
from e2escan.config import from_dict, option, to_dict
from e2escan.errors import ConfigError, ScenarioError
from e2escan.protocols import get_protocol
from e2escan.sim.calibration import Calibration
from e2escan.sim.runner import scenario_digest, scenario_to_toml
from e2escan.sim.scenario import Scenario, resolve_scenario
from e2escan.sim.sweep import load_sweep

SCENARIO = 'name = "x"\ndays = 1\n'
PRESET = 'protocol = "tpsi-ad"\n[params]\nthreshold = 5\n'
SWEEP = 'name = "s"\nscenario = "quickstart"\n[set]\ndays = 1\n[grid]\nseed = [1, 2]\n'
PAPER = """title = "T"
source = "S"
claim = "C"
quick = true
full_runtime = "1 s"
full_memory = "1 MB"

[check]
files = ["table.csv"]
rtol = 0.0
atol = 0.0
"""
CALIBRATION = {
    "version": 1, "hasher": "ahash", "bits": 4, "image_size": 32, "encoding": "png", "corpus": "synthetic:3",
    "seed": 0, "unrelated": [0, 0, 1, 1, 1], "transforms": {"identity": [3, 0, 0, 0, 0]}, "provenance": {},
    "hashes": ["a", "b", "c"],
}


def _scenario(tmp: Path, text: str) -> Path:
    (tmp / "scenario.toml").write_text(text)
    Scenario.load(tmp / "scenario.toml")
    return tmp / "scenario.toml"


def _preset(tmp: Path, text: str) -> Path:
    (tmp / "preset.toml").write_text(text)
    get_protocol("tpsi-ad").Params.from_toml(tmp / "preset.toml")
    return tmp / "preset.toml"


def _sweep(tmp: Path, text: str) -> Path:
    (tmp / "sweep.toml").write_text(text)
    load_sweep(tmp / "sweep.toml")
    return tmp / "sweep.toml"


def _paper(tmp: Path, text: str) -> Path:
    folder = tmp / "tiny-paper"
    folder.mkdir(exist_ok=True)
    (folder / "paper.toml").write_text(text)
    reproduction.load_paper(folder)
    return folder / "paper.toml"


def _calibration(tmp: Path, text: str) -> Path:
    (tmp / "cal.json").write_text(text)
    Calibration.load(tmp / "cal.json")
    return tmp / "cal.json"


def _json(**changes: object) -> str:
    return json.dumps({**CALIBRATION, **changes})


CASES: list[tuple[str, Callable[[Path, str], Path], str, str]] = [
    # (case, loader, file text, the line after "FILE: ")
    ("scenario key", _scenario, SCENARIO + "[population]\nacounts = 10\n",
     "population.acounts = 10: unknown key; accepted keys: accounts, offender_share"),
    ("scenario type", _scenario, 'name = "x"\ndays = "2"\n',
     'days = "2": wrong type (a string); accepted: an integer at least 1'),
    ("scenario range", _scenario, SCENARIO + "[population]\noffender_share = 1.5\n",
     "population.offender_share = 1.5: out of range; accepted: a number from 0.0 to 1.0"),
    ("scenario protocol key", _scenario, SCENARIO + "[protocol.params]\ntreshold = 3\n",
     "protocol.params.treshold = 3: unknown key; accepted keys: threshold, payload_size"),
    ("scenario protocol type", _scenario, SCENARIO + '[protocol.params]\nthreshold = "3"\n',
     'protocol.params.threshold = "3": wrong type (a string); accepted: an integer'),
    ("scenario protocol range", _scenario, SCENARIO + "[protocol.params]\nthreshold = 0\n",
     "protocol.params: tpsi-ad.threshold = 0 is out of range; accepted: in 1..4096"),
    ("preset key", _preset, PRESET + "threshhold = 6\n",
     "params.threshhold = 6: unknown key; accepted keys: threshold, payload_size"),
    ("preset type", _preset, PRESET.replace("threshold = 5", "cuckoo_load = true"),
     "params.cuckoo_load = true: wrong type (true or false); accepted: a number"),
    ("preset range", _preset, PRESET.replace("threshold = 5", "stash_size = 65"),
     "params: tpsi-ad.stash_size = 65 is out of range; accepted: in 0..64"),
    ("sweep key", _sweep, 'descripton = "typo"\n' + SWEEP,
     'descripton = "typo": unknown key; accepted keys: name, scenario, description, set, grid, random'),
    ("sweep type", _sweep, SWEEP + '[random]\nsamples = "8"\n"seed" = 3\n"days" = {choice = [1, 2]}\n',
     'random.samples = "8": wrong type (a string); accepted: an integer at least 1'),
    ("sweep range", _sweep, SWEEP + '[random]\nsamples = 0\n"days" = {integers = [1, 2]}\n',
     "random.samples = 0: out of range; accepted: an integer at least 1"),
    ("paper key", _paper, 'colour = "red"\n' + PAPER,
     'colour = "red": unknown key; accepted keys: title, source, claim, quick, full_runtime, full_memory, check'),
    ("paper type", _paper, PAPER.replace("quick = true", 'quick = "yes"'),
     'quick = "yes": wrong type (a string); accepted: true or false'),
    ("paper range", _paper, PAPER.replace("atol = 0.0", "atol = -1.0"),
     "check.atol = -1.0: out of range; accepted: a finite number at least 0"),
    ("calibration key", _calibration, _json(colour=1),
     "colour = 1: unknown key; accepted keys: hasher, bits, image_size"),
    ("calibration type", _calibration, _json(bits="4"),
     'bits = "4": wrong type (a string); accepted: an integer at least 1'),
    ("calibration range", _calibration, _json(seed=-1),
     "seed = -1: out of range; accepted: an integer at least 0"),
]


@pytest.mark.parametrize("loader, text, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_names_the_file_the_key_the_value_and_what_is_accepted(tmp_path, loader, text, line):
    with pytest.raises(ConfigError) as info:
        loader(tmp_path, text)
    message = str(info.value)
    path = next(p for p in tmp_path.rglob("*") if p.is_file())
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert line in message, message


def test_every_case_loads_once_the_mistake_is_undone(tmp_path):
    """The fixtures themselves are valid, so each error above is the one mistake it names."""
    _scenario(tmp_path, SCENARIO + "[protocol.params]\nthreshold = 4\n")
    _preset(tmp_path, PRESET)
    _sweep(tmp_path, SWEEP)
    _paper(tmp_path, PAPER)
    _calibration(tmp_path, _json())


def test_scenarios_raise_scenario_errors():
    with pytest.raises(ScenarioError, match="days = 0: out of range"):
        Scenario.from_dict({"name": "x", "days": 0})


def test_protocol_params_are_typed_and_written_back_as_what_differs_from_the_defaults():
    base = Scenario.load(resolve_scenario("quickstart"))
    params = base.protocol.params
    assert isinstance(params, get_protocol("tpsi-ad").Params) and params.threshold == 3
    assert base.to_dict()["protocol"] == {"name": "tpsi-ad", "params": {"threshold": 3}}
    # Setting a parameter to its default is the same scenario (same digest).
    explicit = base.with_overrides(**{"protocol.params.dedup": params.dedup})
    assert explicit == base and scenario_digest(explicit) == scenario_digest(base)
    # Without parameters of its own, a scenario can switch protocols.
    plain = base.with_overrides(**{"protocol.params": {}}).with_overrides(**{"protocol.name": "plaintext"})
    assert plain.protocol.params == get_protocol("plaintext").Params()
    import tomllib

    assert Scenario.from_dict(tomllib.loads(scenario_to_toml(base))) == base


@dataclass(frozen=True)
class Inner:
    pair: tuple[int, int] = option((1, 2), range=(0, 9))


@dataclass(frozen=True)
class Outer:
    kind: str = option("a", choices=lambda: ("a", "b"))
    inner: Inner = option(default_factory=Inner)
    rest: dict[str, int] = option(default_factory=dict, rest=True)


def test_the_loader_by_itself():
    assert from_dict(Outer, {"inner": {"pair": [3, 4]}, "x": 1}) == Outer("a", Inner((3, 4)), {"x": 1})
    assert to_dict(Outer()) == {"kind": "a", "inner": {"pair": [1, 2]}, "rest": {}}
    for data, line in [
        ({"kind": "c"}, 'where: kind = "c": not one of the choices; accepted: one of "a", "b"'),
        ({"inner": {"pair": [1]}}, "where: inner.pair = [1]: 1 items; accepted: a list of 2 integers each from 0 to 9"),
        ({"inner": {"pair": [1, 10]}}, "where: inner.pair[1] = 10: out of range; accepted: a list of 2 integers"),
        ({"x": "1"}, 'where: x = "1": wrong type (a string); accepted: an integer'),
    ]:
        with pytest.raises(ConfigError) as info:
            from_dict(Outer, data, source="where")
        assert str(info.value).startswith(line), str(info.value)


def test_a_literal_field_accepts_exactly_its_values() -> None:
    """An attack's method is a ``Literal``: the loader refuses anything else in one line listing the choices."""
    base = Scenario.load(resolve_scenario("quickstart"))
    assert base.with_overrides(**{"attacks.evasion": {"method": "whitebox"}}).attacks.evasion.method == "whitebox"
    for bad in ("greybox", 1, True):
        with pytest.raises(ScenarioError) as info:
            base.with_overrides(**{"attacks.evasion": {"method": bad}})
        assert str(info.value).startswith("attacks.evasion.method = ") and 'one of "blackbox", "whitebox"' in str(info.value)


def test_to_toml_leaves_out_none_inside_nested_tables() -> None:
    import tomllib

    from e2escan.config import to_toml

    text = to_toml({"a": 1, "s": {"x": None, "t": {"k": None, "v": 2}, "items": [{"p": None, "q": "z"}]}})
    assert tomllib.loads(text) == {"a": 1, "s": {"t": {"v": 2}, "items": [{"q": "z"}]}}
