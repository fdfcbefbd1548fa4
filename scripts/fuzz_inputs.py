"""Bad (and good) input thrown at the command line, with a tally of how each case ended.

Every case is a command line of ``immunesim validate`` or ``immunesim run``: a small base
scenario with random ``--set`` overrides (any key of the schema, any kind of value: huge,
negative, zero, non-finite, wrong type, lists, tables), random option values, or a
scenario file with random content (a byte-order mark, only a comment, binary, deep
nesting). A case passes when it ends with exit status 0, or with exit status 2 and one
``error:`` line; it fails when it ends in a traceback, runs beyond the work budget, or
changes an earlier run directory it was not allowed to overwrite, or a run that finished
logged fewer therapy events than its scenario scheduled. Runs that are accepted
are run only when small (at most ``--max-work`` site-steps): the others are accepted by
validation within the budget, which is what the budget promises.

    python scripts/fuzz_inputs.py --cases 400 --seed 1      # prints the tally as JSON

``tests/cli/test_fuzz.py`` runs a short pass of it in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]

#: A case that takes longer than this ran away (the base scenario runs in about a second).
RUNAWAY_SECONDS = 120.0

BASE_TOML = """\
name = "fuzz"
[lattice]
size = 24
[lattice.zones]
unit_um = 240
[time]
dt_hours = 6
run_in_days = 4
follow_up_days = 4
sample_every_hours = 24
[[therapy]]
type = "lymphodepletion"
days = [-3, -2]
[[therapy]]
type = "car_t"
day = 0
dose_per_kg = 2e6
[[therapy]]
type = "vaccination"
day = 1
antigen = "tetanus"
"""

VALUES: list[str] = [
    "0", "-1", "1", "2", "0.5", "1e308", "-1e308", "1e-300", "1e6", "1e20", "nan", "inf",
    "-inf", "true", '"text"', '""', "[]", "[1, 2]", '["CD19"]', '["CD99"]', "{}",
    '{a = 1}', "63", "64", "128", "2147483648", "9223372036854775808", "-0.0", "1e-9",
    '"marrow"', '"none"', "[-1e9, 1e9]", '["a", "a"]', "[" + ", ".join(["1"] * 2000) + "]",
]  # fmt: skip

OPTIONS: list[list[str]] = [
    ["--seed", "-1"], ["--seed", "x"], ["--seed", "99999999999999999999"], ["--seed", "3"],
    ["--backend", "opencl"], ["--backend", "cuda"], ["--flush-seconds", "-1"],
    ["--patients", "0"], ["--patients", "2"], ["--jobs", "0"], ["--bogus"],
    ["--checkpoint-every-days", "-1"], ["--checkpoint-every-days", "0.5"], ["--set", "x"],
    ["--set", "=1"], ["--set", "lattice.size"], ["--force"], ["--quiet"],
]  # fmt: skip

CONTENTS: list[bytes] = [
    b"", b"# only a comment\n", b"\xef\xbb\xbf" + BASE_TOML.encode(), b"\x00\x01\x02\xff",
    b"[lattice\nsize = 1\n", b"a = " + b"[" * 500 + b"]" * 500 + b"\n",
    b'name = "x"\n' * 2, BASE_TOML.encode().replace(b"size = 24", b"size = 24.5"),
    "name = \"\u00e9\u4e2d\"\n".encode(), BASE_TOML.encode() + b"[extra]\nkey = 1\n",
]  # fmt: skip


def schema_keys() -> list[str]:
    """Every leaf key path of the scenario schema (list entries by index)."""
    from immunesim.scenario import THERAPY_SCHEMAS, Scenario

    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, path)
            else:
                keys.append(path)

    walk(Scenario, "")
    for i in range(4):
        for cls in THERAPY_SCHEMAS:
            walk(cls, f"therapy.{i}")
    keys += ["variability.0.key", "variability.0.sigma", "lattice.zones.file", "nokey.x"]
    return sorted(set(keys))


def make_case(rng: random.Random, keys: list[str], work: Path) -> dict[str, Any]:
    """One command line (and the files it needs) to throw at immunesim."""
    base = work / "base.toml"
    command = rng.choice(["validate", "validate", "run"])
    scenario = base
    if rng.random() < 0.15:
        scenario = work / f"content_{rng.randrange(10**9)}.toml"
        scenario.write_bytes(rng.choice(CONTENTS))
    argv = [command, str(scenario)]
    for _ in range(rng.choice([1, 1, 2, 3])):
        argv += ["--set", f"{rng.choice(keys)}={rng.choice(VALUES)}"]
    if rng.random() < 0.3:
        argv += rng.choice(OPTIONS)
    guarded = None
    if command == "run":
        out = work / f"run_{rng.randrange(10**9)}"
        if rng.random() < 0.3:  # an earlier run that must survive
            shutil.copytree(work / "earlier", out)
            guarded = out
        argv += ["--out", str(out), "--quiet"]
    return {"argv": argv, "guarded": guarded}


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def judge(case: dict[str, Any], max_work: float) -> str:
    """How one case ended: ``ok``, ``bad input``, or a failure (``traceback``, ``runaway``,
    ``damaged earlier run``, ``not one line``, ``ignored therapy``)."""
    from immunesim import cli
    from immunesim.scenario import ScenarioError, load_scenario

    argv = case["argv"]
    if argv[0] == "run" and "--force" not in argv:
        # accepted runs bigger than max_work are not run (validation is what is judged)
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set" and i + 1 < len(argv)]
        try:
            s = load_scenario(argv[1], sets)
            if s.work() > max_work or "--patients" in argv:
                argv = ["validate", *argv[1:]]
                argv = [a for a in argv if a not in ("--quiet",)]
                argv = _drop_run_options(argv)
        except (ScenarioError, ValueError):
            pass
    before = _snapshot(case["guarded"]) if case["guarded"] else None
    started = time.perf_counter()
    err = io.StringIO()
    code: int | str = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        old = sys.argv
        sys.argv = ["immunesim", *argv]
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - anything that escapes is what we look for
            code = "traceback"
        finally:
            sys.argv = old
    text = err.getvalue()
    if code == "traceback" or "Traceback" in text:
        return "traceback"
    if time.perf_counter() - started > RUNAWAY_SECONDS:
        return "runaway"
    if before is not None and "--overwrite" not in argv and _snapshot(case["guarded"]) != before:
        return "damaged earlier run"
    if code == 0:
        if argv[0] == "run" and "--patients" not in argv and _therapy_ignored(argv):
            return "ignored therapy"
        return "ok"
    if code == 2:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "bad input" if lines and lines[0].startswith("error:") else "not one line"
    return f"exit {code}"


def _therapy_ignored(argv: list[str]) -> bool:
    """Whether a finished run logged fewer events than its therapies scheduled."""
    from immunesim.engine.therapies import EFFECTS
    from immunesim.scenario import load_scenario

    out = Path(argv[argv.index("--out") + 1])
    manifest = json.loads((out / "manifest.json").read_text())
    events = json.loads((out / "events.json").read_text())["events"]
    s = load_scenario(manifest["scenario"])
    for t in s.therapy:
        planned = len(EFFECTS[t.type].event_days(t))
        if planned and sum(e["kind"] == t.type for e in events) < planned:
            return True
    return False


def _drop_run_options(argv: list[str]) -> list[str]:
    """A run command line turned into a validate one (run-only options removed)."""
    out, skip = [], False
    run_only = {"--out", "--seed", "--backend", "--flush-seconds", "--patients", "--jobs",
                "--checkpoint-every-days"}  # fmt: skip
    for a in argv:
        if skip:
            skip = False
            continue
        if a in run_only:
            skip = True
            continue
        if a in ("--overwrite", "--quiet"):
            continue
        out.append(a)
    return out


def fuzz(n: int, seed: int, max_work: float = 2e6) -> dict[str, Any]:
    """Run ``n`` cases; returns the tally and the failing command lines."""
    rng = random.Random(seed)
    keys = schema_keys()
    tally: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "base.toml").write_text(BASE_TOML)
        earlier = work / "earlier"
        earlier.mkdir()
        (earlier / "manifest.json").write_text(json.dumps({"immunesim_manifest": 1}))
        (earlier / "timeseries.csv").write_text("step,day\n0,-4\n")
        t0 = time.perf_counter()
        for _ in range(n):
            case = make_case(rng, keys, work)
            outcome = judge(case, max_work)
            tally[outcome] += 1
            if outcome not in ("ok", "bad input"):
                failures.append({"outcome": outcome, "argv": case["argv"]})
        seconds = time.perf_counter() - t0
    return {
        "cases": n,
        "seed": seed,
        "tally": dict(tally.most_common()),
        "failures": failures,
        "seconds": round(seconds, 1),
        "cases_per_second": round(n / seconds, 2) if seconds > 0 else math.inf,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--max-work",
        type=float,
        default=2e6,
        help="largest accepted run (site-steps) that is run, not only validated",
    )
    args = ap.parse_args()
    result = fuzz(args.cases, args.seed, args.max_work)
    json.dump(result, sys.stdout, indent=2)
    print()
    sys.exit(0 if not result["failures"] else 1)


if __name__ == "__main__":
    main()
