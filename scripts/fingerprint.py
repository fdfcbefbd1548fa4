"""Fingerprints of every shipped scenario's outputs, to show that a refactor changed no bit.

Runs each scenario of ``scenarios/`` on a reduced lattice (and, with ``--full``, the default
scenario at its own size) and prints one line per run: the SHA-256 of its time series (CSV
bytes), endpoints and events. Run it on two checkouts and compare the lines::

    python scripts/fingerprint.py > before.txt     # on the old checkout
    python scripts/fingerprint.py > after.txt      # on the new one
    diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fingerprint(path: Path, overrides: list[str], seed: int, backend: str) -> str:
    import immunesim

    r = immunesim.run(path, seed=seed, overrides=overrides, backend=backend)
    parts = [
        r.timeseries.to_csv(index=False, float_format="%.17g"),
        json.dumps(r.endpoints, sort_keys=True, default=str),
        json.dumps(r.events, sort_keys=True, default=str),
    ]
    return " ".join(hashlib.sha256(p.encode()).hexdigest()[:16] for p in parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=48, help="reduced lattice size (default 48)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--full", action="store_true", help="also the default scenario at full size")
    ap.add_argument(
        "scenarios", nargs="*", type=Path, default=sorted((REPO / "scenarios").glob("*.toml"))
    )
    a = ap.parse_args(argv)
    for path in a.scenarios:
        fp = fingerprint(
            path,
            [f"lattice.size={a.size}", f"lattice.zones.unit_um={a.size * 10}"],
            a.seed,
            a.backend,
        )
        print(f"{path.name} L={a.size} seed={a.seed}: {fp}", flush=True)
    if a.full:
        path = REPO / "scenarios" / "sle_cd19_cart.toml"
        print(f"{path.name} full seed=1: {fingerprint(path, [], 1, a.backend)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
