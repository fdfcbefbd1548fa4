"""The ``immunesim`` command: run, resume, compare, validate, plot, report, rescore, calibrate,
sweep, sensitivity, animate, app, bench, cache, schema, info.

Exit status: 0 success; 2 bad input (scenario, override, option, run directory,
checkpoint); 74 writing the outputs failed (a full disk); 128 + the signal for a run
stopped by a signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP), after writing its outputs and a
checkpoint that ``immunesim resume`` goes on from. Errors about input are one line naming
the file, the key path and what was expected.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Agent-based simulation of the immune system and the CAR-T immune reset.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

EXIT_BAD_INPUT = 2
#: Writing the outputs failed (a full disk): sysexits' EX_IOERR.
EXIT_IO = 74
EXIT_INTERRUPTED = 130


#: Options shared by run and resume.
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Scheduler = Annotated[
    str | None,
    typer.Option(
        help="Run the patients on the dask cluster at this address (tcp://host:8786; the "
        "sweeps' executor, pip install 'immunesim\\[dist]') instead of local processes."
    ),
]
ClusterAddress = Annotated[
    str | None,
    typer.Option("--scheduler", help="Address of a running dask scheduler (tcp://host:8786)."),
]
Workers = Annotated[
    int | None,
    typer.Option(help="Worker processes of the local cluster (default: one a core).", min=1),
]
NoCache = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Compute the untreated run-in instead of starting from the run-in cache (the "
        "results are the same bits; see `immunesim cache info`).",
    ),
]
FlushSeconds = Annotated[
    float,
    typer.Option(help="Rewrite the outputs at least this often during the run (seconds).", min=0.0),
]


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    seed: Annotated[int | None, typer.Option(help="Random seed (default: run.seed).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a scenario value: key.path=value (repeatable)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="auto | numba | cuda (default: run.backend; auto takes a GPU when there is one)."
        ),
    ] = None,
    quiet: Quiet = False,
    flush_seconds: FlushSeconds = 30.0,
    patients: Annotated[
        int | None,
        typer.Option(
            help="Run a cohort of this many virtual patients (see \\[\\[variability]]).", min=1
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Worker processes for a cohort (default: cores).", min=1)
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an earlier run (or cohort) in --out, clearing it first."
        ),
    ] = False,
    checkpoint_every_days: Annotated[
        float | None,
        typer.Option(
            help="Write DIR/checkpoint.npz every this many simulated days (it is written at "
            "least every 10 minutes anyway, and when a signal stops the run).",
            min=0.0,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Run beyond the work budget (2e11 site-steps)."),
    ] = False,
    no_cache: NoCache = False,
    scheduler: Scheduler = None,
) -> None:
    """Run a scenario and write timeseries.csv/.parquet, endpoints.json and manifest.json.

    With --patients N, run a cohort: DIR/patient_NNN/ per patient, DIR/cohort.csv and
    DIR/cohort_summary.json (median and 90% interval of each endpoint)."""
    from immunesim.engine.geometry import build_zones
    from immunesim.runner import prepare_out
    from immunesim.runner import run as run_scenario
    from immunesim.scenario import ScenarioError, check_budget, load_scenario

    try:
        s = load_scenario(scenario, set_ or [])
        check_budget(s, force, str(scenario))
        if s.lattice.zones.layout == "file":
            build_zones(s, s.run.seed)  # reads and checks the zone map
    except ScenarioError as exc:
        _fail(str(exc))
    if seed is not None and not 0 <= seed < 2**63:
        _fail(f"--seed: a whole number from 0 to 2**63-1 (got {seed})")
    try:
        prepare_out(out_dir, overwrite)
    except ScenarioError as exc:
        _fail(str(exc))

    if scheduler is not None and patients is None:
        _fail("--scheduler: runs the patients of a cohort; give --patients N too")
    if patients is not None:
        _run_cohort(s, patients, out_dir, seed, jobs, backend, quiet, no_cache, scheduler)
        return

    bar, progress = _run_progress(s, quiet)
    result = _supervised(
        bar,
        out_dir,
        lambda: run_scenario(
            s,
            seed,
            backend=backend,
            out=out_dir,
            overwrite=True,  # prepared above: empty, or cleared with --overwrite
            progress=progress,
            flush_seconds=flush_seconds,
            checkpoint_every_days=checkpoint_every_days,
            argv=sys.argv,
            cache=False if no_cache else None,
        ),
    )
    _print_endpoints(result.endpoints, result.manifest, out_dir)


def _supervised(bar, out_dir: Path, call):
    """``call()`` (a run) with its progress bar shown; what stops it becomes one line and
    an exit status (2 bad input, 74 a write failed, 128 + a signal)."""
    from immunesim.backends import BackendError
    from immunesim.runner import RunInterrupted
    from immunesim.scenario import ScenarioError

    try:
        if bar is not None:
            bar.start()
        try:
            return call()
        finally:
            if bar is not None:
                bar.stop()
    except ScenarioError as exc:
        _fail(str(exc))
    except BackendError as exc:
        _fail(f"--backend: {exc}")
    except RunInterrupted as exc:
        _interrupted(exc)
    except OSError as exc:
        _io_failed(exc)
    except KeyboardInterrupt:
        err.print(f"interrupted: partial outputs written to {out_dir} (no checkpoint at this step)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _run_progress(s, quiet: bool):
    """A progress bar for a run (``None`` when quiet) and its per-sample callback."""
    progress = None
    bar = None
    if not quiet:
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("day {task.fields[day]:>7.1f}"),
            TextColumn("{task.fields[cells]}"),
            TextColumn("{task.fields[rate]:>6.0f} steps/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        task = bar.add_task(s.name, total=s.total_steps, day=s.day_of_step(0), cells="", rate=0.0)
        t0 = [time.perf_counter(), 0]

        def progress(sim) -> None:  # noqa: F811 - the progress callback
            row = sim.rows[-1]
            now = time.perf_counter()
            rate = (sim.step_index - t0[1]) / max(now - t0[0], 1e-9)
            t0[0], t0[1] = now, sim.step_index
            cells = (
                f"B {row['b_cells']:>6}  CAR-T {row['car_t']:>6}  "
                f"LLPC {row['llpc']:>5}  anti-dsDNA {row['anti_dsdna']:7.2f}"
            )
            bar.update(task, completed=sim.step_index, day=sim.day, cells=cells, rate=rate)

    return bar, progress


def _io_failed(exc: OSError) -> None:
    """Report outputs that could not be written (a full disk) and exit with EXIT_IO."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(EXIT_IO)


def _interrupted(exc) -> None:
    """Report a run a signal stopped, and exit with 128 + the signal."""
    if exc.out_dir is None:
        err.print(f"stopped by {exc}: before the simulation started, nothing written")
    elif exc.resumable:
        err.print(
            f"stopped by {exc}: outputs so far and a checkpoint in {exc.out_dir}; "
            f"go on with: immunesim resume {exc.out_dir}"
        )
    else:
        err.print(f"stopped by {exc}: outputs so far in {exc.out_dir}")
    raise typer.Exit(128 + exc.signum) from None


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a stopped run.")],
    backend: Annotated[
        str | None,
        typer.Option(help="auto | numba | cuda (default: auto; the bits do not depend on it)."),
    ] = None,
    quiet: Quiet = False,
    flush_seconds: FlushSeconds = 30.0,
    checkpoint_every_days: Annotated[
        float | None,
        typer.Option(help="Write a checkpoint every this many simulated days.", min=0.0),
    ] = None,
) -> None:
    """Go on with a run that was stopped (a signal, a crash, a killed machine) from its last
    checkpoint; its outputs end as those of the uninterrupted run, bit for bit."""
    from immunesim.runner import resumable
    from immunesim.runner import resume as resume_run
    from immunesim.scenario import ScenarioError, load_scenario

    try:
        manifest = resumable(run_dir)
    except ScenarioError as exc:
        _fail(str(exc))
    try:
        s = load_scenario(manifest["scenario"])
    except (KeyError, ScenarioError):
        s = None  # resume_run says what is wrong with the checkpoint
    bar, progress = _run_progress(s, quiet or s is None)
    result = _supervised(
        bar,
        run_dir,
        lambda: resume_run(
            run_dir,
            backend=backend,
            progress=progress,
            flush_seconds=flush_seconds,
            checkpoint_every_days=checkpoint_every_days,
            argv=sys.argv,
        ),
    )
    _print_endpoints(result.endpoints, result.manifest, run_dir)


def _count_bar(description: str, total: int, unit: str, **fields: Any):
    """A progress bar counting ``unit`` done out of ``total`` (with ETA), and its task; each
    keyword is a text field shown after the count."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
        *[TextColumn(f"{{task.fields[{k}]}}") for k in fields],
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    return bar, bar.add_task(description, total=total, **fields)


def _patients_bar(description: str, total: int, quiet: bool):
    """A bar counting finished patients (``None`` when quiet) and its callback."""
    if quiet:
        return None, None
    bar, task = _count_bar(description, total, "runs")

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done)

    return bar, progress


def _on_workers(bar, out_dir: Path, call):
    """``call()`` (patients on worker processes) with its bar shown; a full disk or a stop
    signal becomes one line and an exit status."""
    from immunesim.scenario import ScenarioError

    if bar is not None:
        bar.start()
    try:
        return call()
    except ScenarioError as exc:  # an unreachable scheduler
        _fail(str(exc))
    except OSError as exc:
        _io_failed(exc)
    except KeyboardInterrupt as exc:
        import signal

        name = str(exc.args[0]) if exc.args else "SIGINT"
        signum = signal.Signals[name] if name in signal.Signals.__members__ else signal.SIGINT
        err.print(
            f"stopped by {signum.name}: finished patients are in {out_dir}; the workers "
            "wrote what their patients had done"
        )
        raise typer.Exit(128 + signum) from None
    finally:
        if bar is not None:
            bar.stop()


def _run_cohort(
    s, patients, out_dir, seed, jobs, backend, quiet, no_cache=False, scheduler=None
) -> None:
    from immunesim.cohort import run_cohort

    bar, progress = _patients_bar(f"{s.name} cohort", patients, quiet)
    _, summary = _on_workers(
        bar,
        out_dir,
        lambda: run_cohort(
            s,
            patients,
            out_dir,
            seed=seed,
            jobs=jobs,
            backend=backend,
            progress=progress,
            overwrite=True,  # prepared by the caller: empty, or cleared with --overwrite
            cache=False if no_cache else None,
            scheduler=scheduler,
        ),
    )
    table = Table(title=f"Cohort of {patients}: median [5%, 95%]", header_style="bold")
    for col in ("endpoint", "median", "5%", "95%", "reached"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for name, st in summary["endpoints"].items():
        table.add_row(
            name, _fmt(st["median"]), _fmt(st["p5"]), _fmt(st["p95"]), f"{st['n']}/{st['of']}"
        )
    out.print(table)
    out.print(f"wrote {out_dir}/cohort.csv, cohort_summary.json and {patients} patient runs")


@app.command()
def compare(
    scenarios: Annotated[
        list[Path], typer.Argument(help="Two or more scenario files; the first is the reference.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write.")],
    patients: Annotated[int, typer.Option(help="Virtual patients per scenario.", min=1)] = 8,
    seed: Annotated[
        int | None, typer.Option(help="Cohort seed (default: the first scenario's run.seed).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a value of every scenario: key.path=value."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Worker processes (default: cores).", min=1)
    ] = None,
    backend: Annotated[str | None, typer.Option(help="auto | numba | cuda.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier comparison in --out.")
    ] = False,
    no_cache: NoCache = False,
    scheduler: Scheduler = None,
    quiet: Quiet = False,
) -> None:
    """Run the same virtual patients through each scenario's therapy, from the same state
    before treatment, and report paired differences of every endpoint against the first.

    Writes DIR/<scenario>/patient_NNN/ (one run directory each), DIR/compare.csv (one row per
    patient and scenario), DIR/paired.csv (patient, endpoint, scenario, value, reference,
    difference) and DIR/compare_summary.json. The scenarios must give the same patients
    before their therapies (same disease, lattice and time step)."""
    from immunesim.compare import compare as run_compare
    from immunesim.runner import prepare_out
    from immunesim.scenario import ScenarioError, check_budget, load_scenario

    if len(scenarios) < 2:
        _fail("compare: at least two scenario files (the first is the reference)")
    try:
        loaded = [load_scenario(f, set_ or []) for f in scenarios]
        for f, s in zip(scenarios, loaded, strict=True):
            check_budget(s, False, str(f))
        from immunesim.compare import check_same_patients

        first_seed = loaded[0].run.seed if seed is None else seed
        check_same_patients(loaded, [str(f) for f in scenarios], first_seed, patients)
        prepare_out(out_dir, overwrite)
    except ScenarioError as exc:
        _fail(str(exc))
    if seed is not None and not 0 <= seed < 2**63:
        _fail(f"--seed: a whole number from 0 to 2**63-1 (got {seed})")
    total = patients * len(scenarios)
    bar, progress = _patients_bar("compare", total, quiet)
    _, _, summary = _on_workers(
        bar,
        out_dir,
        lambda: run_compare(
            loaded,
            patients,
            out_dir,
            files=[str(f) for f in scenarios],
            seed=seed,
            jobs=jobs,
            backend=backend,
            progress=progress,
            overwrite=True,  # prepared above
            cache=False if no_cache else None,
            scheduler=scheduler,
        ),
    )
    ref = summary["reference"]
    for name, ends in summary["paired_differences"].items():
        table = Table(
            title=f"{name} vs {ref}: {patients} patients, medians and the paired "
            "difference [5%, 95%]",
            header_style="bold",
        )
        table.add_column("endpoint", no_wrap=True)
        for col in (ref, name, "difference [5%, 95%]", "pairs"):
            table.add_column(col, justify="right", overflow="fold")
        for endpoint, st in ends.items():
            spread = f" [{_fmt(st['p5'])}, {_fmt(st['p95'])}]" if st["n"] > 1 else ""
            table.add_row(
                endpoint,
                _fmt(st["reference_median"]),
                _fmt(st["median_value"]),
                _fmt(st["median"]) + spread,
                f"{st['n']}/{st['of']}",
            )
        out.print(table)
    out.print(
        f"wrote {out_dir}/compare.csv, paired.csv, compare_summary.json and {total} patient runs"
    )


def _fmt(v: Any) -> str:
    return "-" if v is None else v if isinstance(v, str) else f"{v:.3g}"


def _print_endpoints(ends: dict, manifest: dict, out_dir: Path) -> None:
    table = Table(title="Endpoints", show_header=True, header_style="bold")
    table.add_column("endpoint")
    table.add_column("value", justify="right")
    for k, v in ends.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        table.add_row(k, "-" if v is None else str(v))
    out.print(table)
    t = manifest["timing"]
    fork = manifest.get("run_in") or {}
    started = (
        f", from the cached run-in at day {fork['from_day']:.3g}"
        if fork.get("cache") == "hit"
        else ""
    )
    out.print(
        f"wrote {out_dir}/ ({', '.join(manifest.get('files', []))}) in {t['wall_seconds']:.1f} s,"
        f" {manifest['steps_done']} steps, backend {manifest['backend']}{started}"
    )


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario files to check.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Overrides to apply before checking.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Accept runs beyond the work budget.")
    ] = False,
) -> None:
    """Check scenario files without running them: what passes here runs (within the work
    budget of 2e11 site-steps, unless --force)."""
    from immunesim.engine.geometry import build_zones
    from immunesim.scenario import ScenarioError, check_budget, load_scenario

    bad = 0
    for f in files:
        try:
            s = load_scenario(f, set_ or [])
            check_budget(s, force, str(f))
            if s.lattice.zones.layout == "file":
                build_zones(s, s.run.seed)  # reads and checks the zone map
        except ScenarioError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            bad += 1
            continue
        out.print(
            f"ok  {escape(str(f))}  ({s.name}: {s.lattice.size}x{s.lattice.size} sites, "
            f"{s.time.run_in_days:g} d run-in + {s.time.follow_up_days:g} d, "
            f"{len(s.therapy)} therapy entries, {s.total_steps} steps)",
            soft_wrap=True,  # one line a file, whatever the terminal's width
        )
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run, cohort, comparison or sweep directory.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Image to write (.png/.svg/.pdf).")
    ] = None,
    first_day: Annotated[
        float | None, typer.Option(help="First day shown (default: 30 d before therapy).")
    ] = None,
) -> None:
    """Plot a clinical course: of a run, cells, titres, disease activity and therapy events;
    of a cohort, a comparison or a sweep, the median and 5-95% band of each group (CAR-T
    and B cells in blood, anti-dsDNA, protective titre, disease score)."""
    from immunesim.plot import plot_results
    from immunesim.results import kind_of

    if kind_of(run_dir) is None:
        _fail(
            f"{run_dir}: a run directory (timeseries.csv and manifest.json), a cohort "
            "(cohort.csv), a comparison (compare.csv) or a sweep (sweep.json)"
        )
    suffix = (out_file.suffix.lower() if out_file else ".png") or ".png"
    if suffix not in (".png", ".svg", ".pdf"):
        _fail(f"--out {out_file}: a file name ending in .png, .svg or .pdf")
    target = out_file or run_dir / "course.png"
    plot_results(run_dir, target, first_day)
    out.print(f"wrote {target}")


@app.command()
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run, cohort, comparison or sweep directories.")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Report file (.md or .html).")],
) -> None:
    """Compare runs with the published clinical facts: targets met or missed, time course
    with the published points, endpoints side by side."""
    from immunesim.report import write_report
    from immunesim.results import kind_of

    for d in run_dirs:
        if kind_of(d) is None:
            _fail(
                f"{d}: a run directory (endpoints.json), a cohort (cohort.csv), a comparison "
                "(compare.csv) or a sweep (sweep.json)"
            )
    if out_file.suffix.lower() not in (".md", ".html", ".htm"):
        _fail(f"--out {out_file}: a file name ending in .md or .html")
    write_report(run_dirs, out_file)
    out.print(f"wrote {out_file}")


@app.command()
def rescore(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run, cohort or comparison directories.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="endpoints.KEY=VALUE to score with, e.g. "
            "endpoints.car_t_detection_per_ul=2 (repeatable).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
) -> None:
    """Score stored runs again: compute their endpoints from the stored time series with
    the endpoints.* overrides given, and rewrite endpoints.json, the manifests and a
    cohort's or comparison's tables. Other keys change the simulation: make those runs
    again."""
    from immunesim.rescoring import rescore as rescore_dir
    from immunesim.rescoring import write
    from immunesim.scenario import ScenarioError

    results = []
    try:  # every directory is checked and scored before any is written
        for d in run_dirs:
            results.append(rescore_dir(d, set_ or [], dry_run=True))
        if not dry_run:
            for r in results:
                write(r)
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:
        _io_failed(exc)
    for r in results:
        changes = r.changes()
        title = f"{r.path} ({r.kind}, {len(r.runs)} run{'s' if len(r.runs) != 1 else ''})"
        if not len(changes):
            out.print(f"{escape(title)}: no endpoint changed")
            continue
        table = Table(title=escape(title), show_header=True, header_style="bold")
        for col, justify in (
            ("endpoint", "left"),
            ("runs changed", "right"),
            ("median before", "right"),
            ("median after", "right"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for row in changes.itertuples():
            table.add_row(
                row.endpoint,
                f"{row.runs_changed} of {row.of}",
                _fmt(row.median_before),
                _fmt(row.median_after),
            )
        out.print(table)
    out.print(
        "dry run: nothing written"
        if dry_run
        else f"rescored {sum(len(r.runs) for r in results)} runs in {len(results)} "
        f"director{'ies' if len(results) != 1 else 'y'}"
    )


@app.command()
def calibrate(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    param: Annotated[
        str, typer.Option(help="Key path of the value to fit, e.g. therapy.2.memory_kill_factor.")
    ],
    low: Annotated[float, typer.Option(help="Lowest value of the grid.")],
    high: Annotated[float, typer.Option(help="Highest value of the grid.")],
    target: Annotated[
        str,
        typer.Option(
            help="Published target to fit (a name in immunesim/data/clinical_targets.toml)."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the runs.")],
    points: Annotated[int, typer.Option(help="Grid points.", min=2)] = 5,
    patients: Annotated[int, typer.Option(help="Virtual patients per grid point.", min=1)] = 3,
    seed: Annotated[int | None, typer.Option(help="Cohort seed.")] = None,
    jobs: Annotated[int | None, typer.Option(help="Worker processes.", min=1)] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Other overrides (key.path=value).")
    ] = None,
) -> None:
    """Fit one scenario value to one published target: a cohort per grid value, the value
    whose cohort median is closest to the published point (interpolated when bracketed)."""
    from immunesim.calibrate import calibrate as fit
    from immunesim.calibrate import find_target
    from immunesim.scenario import ScenarioError, load_scenario

    try:
        s = load_scenario(scenario, set_ or [])
        t = find_target(target)
    except ScenarioError as exc:
        _fail(str(exc))
    except KeyError as exc:
        _fail(f"--target: {exc.args[0]}")
    values = [float(v) for v in np.linspace(low, high, points)]
    try:
        res = fit(
            s,
            param,
            values,
            t,
            out_dir,
            patients=patients,
            seed=seed,
            jobs=jobs,
            progress=lambda i, n: err.print(f"grid point {i}/{n} done"),
        )
    except ScenarioError as exc:
        _fail(str(exc))
    table = Table(
        title=f"{t.endpoint} against {param} (published {t.point:g})", header_style="bold"
    )
    for col in (param, "median", "5%", "95%", "reached"):
        table.add_column(col, justify="right", overflow="fold")
    for _, r in res.grid.iterrows():

        def fmt(v):
            return "-" if v is None or v != v else f"{v:.3g}"

        table.add_row(
            f"{r['value']:.4g}",
            fmt(r["median"]),
            fmt(r["p5"]),
            fmt(r["p95"]),
            f"{int(r['reached'])}/{int(r['of'])}",
        )
    out.print(table)
    out.print(
        f"fitted {param} = {res.value:.4g}; apply with --set {param}={res.value:.4g}; "
        f"runs, calibration.csv/.json/.png in {out_dir}"
    )


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file (TOML; see docs/sweeps.md).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory to write.")],
    scheduler: ClusterAddress = None,
    workers: Workers = None,
    quiet: Quiet = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace another sweep (or run) in --out.")
    ] = False,
) -> None:
    """Run a sweep: a design of scenario values (grid, Latin hypercube, Sobol) crossed with
    seeds or virtual patients, on dask.distributed. Results stream to DIR/results.parquet
    and DIR/timeseries.parquet as runs finish; the same command again goes on with the runs
    not finished."""
    from immunesim.scenario import ScenarioError
    from immunesim.sweep import read_sweep, run_sweep

    try:
        sw = read_sweep(sweep_file)
    except ScenarioError as exc:
        _fail(str(exc))
    bar = None
    progress = None
    if not quiet:
        bar, task = _count_bar(f"{sw.scenario.name} sweep", len(sw.design), "runs", failed="")

        def progress(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done + failed, failed=f"{failed} failed" if failed else "")

    results = _on_cluster(
        bar,
        lambda: run_sweep(
            sw,
            out_dir,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        ),  # fmt: skip
        f"stopped: finished runs are in {out_dir}; the same command goes on with the rest",
    )
    failed = results[results["status"] != "ok"] if len(results) else results
    out.print(
        f"{len(results) - len(failed)} of {len(sw.design)} runs finished in {out_dir} "
        f"(results.parquet, timeseries.parquet; load with immunesim.load_sweep)",
        soft_wrap=True,
    )
    for _, r in failed.iterrows():
        err.print(f"run {int(r['run'])} failed: {escape(str(r['error']))}", soft_wrap=True)


def _on_cluster(bar, call, stopped: str):
    """``call()`` (work on a dask cluster) with its bar shown; SIGTERM and SIGHUP stop it as
    Ctrl-C does; bad input, a full disk and a stop become one line and an exit status."""
    import signal

    from immunesim.scenario import ScenarioError

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if bar is not None:
            bar.start()
        return call()
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:
        _io_failed(exc)
    except KeyboardInterrupt:
        err.print(stopped)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if bar is not None:
            bar.stop()
        for sig, h in old.items():
            signal.signal(sig, h)


@app.command()
def fit(
    fit_file: Annotated[Path, typer.Argument(help="Fit file (TOML; see docs/calibration.md).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write.")],
    scheduler: ClusterAddress = None,
    workers: Workers = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier fit (or run) in --out.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Fit several scenario values to several published targets at once: Optuna's TPE
    sampler proposes values, each trial runs the same virtual patients on dask, the loss
    comes from each target's tolerance. Writes DIR/trials.csv, runs.csv, fit.json (the best
    values, their ranges and the --set lines that apply them) and fit.png (profiles)."""
    from immunesim.fit import read_fit, run_fit
    from immunesim.runner import prepare_out
    from immunesim.scenario import ScenarioError

    try:
        f = read_fit(fit_file)
        prepare_out(out_dir, overwrite)
    except ScenarioError as exc:
        _fail(str(exc))
    try:
        import optuna  # noqa: F401
    except ImportError:
        _fail("immunesim fit needs optuna: pip install 'immunesim[dist]'")
    bar, progress = None, None
    if not quiet:
        bar, task = _count_bar("fit", f.spec.trials, "trials", best="")

        def progress(done: int, total: int, best: float) -> None:
            bar.update(task, completed=done, best=f"best loss {best:.3g}")

    _, summary = _on_cluster(
        bar,
        lambda: run_fit(
            f, out_dir, scheduler=scheduler, workers=workers, overwrite=True, progress=progress
        ),  # fmt: skip
        f"stopped: the trials so far are in {out_dir}/trials.csv",
    )
    table = Table(
        title=f"Best of {summary['trials']} trials (loss {summary['loss']:.3g}; "
        f"{summary['patients']} patients a trial)",
        header_style="bold",
    )
    table.add_column("target", no_wrap=True)
    for col in ("published", "simulated", "loss", "met"):
        table.add_column(col, justify="right", overflow="fold")
    for name, t in summary["targets"].items():
        table.add_row(
            name, t["published"], _fmt(t["value"]), f"{t['loss']:.3g}", "yes" if t["met"] else "NO"
        )
    out.print(table)
    for key, value in summary["values"].items():
        low, high = summary["ranges_within_1"][key]
        out.print(
            f"{key} = {value:.4g}  (trials within 1 of the best loss: {low:.4g} to {high:.4g})"
        )
    out.print("apply with: " + " ".join(f"--set {line}" for line in summary["set"]), soft_wrap=True)
    out.print(f"wrote {out_dir}/trials.csv, runs.csv, fit.json, fit.png")


@app.command()
def sensitivity(
    sweep_dir: Annotated[Path, typer.Argument(help="Directory of a finished Sobol sweep.")],
    endpoint: Annotated[
        list[str] | None,
        typer.Option(help="Endpoint to analyse (repeatable; default: every numeric one)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Figure (PNG, SVG, PDF); default DIR/sobol.png."),
    ] = None,
) -> None:
    """Sobol first- and total-order indices with 95% confidence intervals (SALib) of the
    endpoints of a ``design = "sobol"`` sweep: a table, DIR/sobol.csv and a figure."""
    from immunesim.scenario import ScenarioError
    from immunesim.sweep import plot_sobol, sobol_indices

    try:
        table = sobol_indices(sweep_dir, endpoint)
    except ScenarioError as exc:
        _fail(str(exc))
    except KeyError as exc:
        _fail(f"--endpoint: not an endpoint of this sweep: {exc.args[0]}")
    if table.empty:
        _fail(f"{sweep_dir}: no endpoint that every run reached and that varies")
    from immunesim import io

    io.atomic_write(sweep_dir / "sobol.csv", lambda p: table.to_csv(p, index=False))
    fig = plot_sobol(table, out_file or sweep_dir / "sobol.png")
    t = Table(title="Sobol indices (95% confidence)", header_style="bold")
    for col in ("endpoint", "parameter", "S1", "ST"):
        t.add_column(col, justify="left" if col in ("endpoint", "parameter") else "right")
    for _, r in table.iterrows():
        t.add_row(
            r["endpoint"], r["parameter"],
            f"{r['S1']:.2f} +/- {r['S1_conf']:.2f}", f"{r['ST']:.2f} +/- {r['ST_conf']:.2f}",
        )  # fmt: skip
    out.print(t)
    out.print(f"sobol.csv and {fig.name} in {sweep_dir}")


@app.command()
def animate(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="A run directory with snapshots, or a scenario file to run first; two or "
            "more are shown side by side, on the days they all recorded."
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="reset.mp4, .gif or .html")],
    fps: Annotated[float, typer.Option(help="Frames per second.", min=0.1)] = 12.0,
    width: Annotated[
        int | None,
        typer.Option(
            help="Width of one film in pixels, 16:9 (default 1280; 960 side by side).", min=320
        ),
    ] = None,
    days: Annotated[str | None, typer.Option(help="Day range FIRST:LAST, e.g. -30:365.")] = None,
    every: Annotated[int, typer.Option(help="Use every N-th frame the pace picks.", min=1)] = 1,
    pace: Annotated[
        str,
        typer.Option(
            help="auto: slow where the state changes (the infusion, the depletion, the return), "
            "fast through plateaus; even: every snapshot."
        ),
    ] = "auto",
    title: Annotated[
        str | None, typer.Option(help="A title card first, and the headline of every frame.")
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(help="Explainer cards first: B cells, T cells, CAR-T, autoantibodies."),
    ] = False,
    overlay: Annotated[
        str, typer.Option(help="Molecular overlay: damage (tissue damage in red) or none.")
    ] = "damage",
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Where to run a scenario given as SOURCE (default: next to --out)."),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Overrides when SOURCE is a scenario.")
    ] = None,
) -> None:
    """Animate the immune reset: lattice, time series with a cursor, captions that follow
    the state; several runs side by side."""
    from immunesim.viz.animate import animate as make
    from immunesim.viz.animate import animate_side_by_side

    first = last = None
    if days:
        try:
            a, b = days.split(":")
            first = float(a) if a.strip() else None
            last = float(b) if b.strip() else None
        except ValueError:
            _fail(f"--days: FIRST:LAST in days, e.g. -30:365 (got {days!r})")
    if overlay not in ("damage", "none"):
        _fail(f"--overlay: 'damage' or 'none' (got {overlay!r})")
    if pace not in ("auto", "even"):
        _fail(f"--pace: 'auto' or 'even' (got {pace!r})")
    if out_file.suffix.lower() not in (".mp4", ".gif", ".html"):
        _fail(f"--out {out_file}: a file name ending in .mp4, .gif or .html")
    if len(sources) > 1 and (run_dir or set_):
        _fail("--run-dir and --set apply to one scenario file, not to several sources")
    if len(sources) > 1 and explain:
        _fail("--explain opens a single film, not a side-by-side one")
    runs: list[Path] = []
    for source in sources:
        if source.is_file():
            from immunesim.runner import run as run_scenario
            from immunesim.scenario import ScenarioError, load_scenario

            overrides = list(set_ or [])
            try:
                s = load_scenario(source, overrides)
            except ScenarioError as exc:
                _fail(str(exc))
            if s.output.snapshot_every_hours <= 0:
                overrides.append("output.snapshot_every_hours=24")
            suffix = "_run" if len(sources) == 1 else f"_run_{len(runs)}_{source.stem}"
            target = run_dir or out_file.with_name(out_file.stem + suffix)
            err.print(f"running {source} into {target} ...")
            run_scenario(source, overrides=overrides, out=target, argv=sys.argv)
            source = target
        elif not (source / "snapshots").is_dir():
            _fail(
                f"{source}: a run directory with snapshots/ (run with --set "
                "output.snapshot_every_hours=24) or a scenario file"
            )
        runs.append(source)
    bar = Progress(
        TextColumn("[bold]rendering"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )

    def progress(total: int):
        task = bar.add_task("frames", total=total)
        return lambda: bar.advance(task)

    common: dict[str, Any] = dict(fps=fps, first_day=first, last_day=last, every=every, pace=pace,
                  overlay=None if overlay == "none" else overlay, progress=progress)  # fmt: skip
    try:
        with bar:
            if len(runs) == 1:
                info = make(runs[0], out_file, width=width or 1280, title=title,
                            explain=explain, **common)  # fmt: skip
            else:
                titles = [title] * len(runs) if title else None
                info = animate_side_by_side(runs, out_file, width=width or 960, titles=titles,
                                            **common)  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    size = out_file.stat().st_size / 2**20
    out.print(
        f"wrote {out_file}: {info['frames']} frames, {info['size'][0]}x{info['size'][1]},"
        f" {size:.1f} MB"
    )


@app.command("app")
def serve_app(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="Scenario with a car_t or anti_cd20 entry (default: the lupus CAR-T scenario, "
            "scenarios/sle_cd19_cart.toml)."
        ),
    ] = None,
) -> None:
    """Serve the interactive educator app in the browser: CAR-T dose, targets and
    autoreactive fraction as controls, the lattice and the clinical course live."""
    import importlib.util
    import os
    import socket

    if importlib.util.find_spec("solara") is None:
        _fail("the interactive app needs Solara: pip install 'immunesim[app]'")
    from immunesim.scenario import ScenarioError
    from immunesim.viz.live import SCENARIO_ENV, load_app_scenario, max_runs

    try:
        max_runs()  # $IMMUNESIM_APP_MAX_RUNS
        load_app_scenario(scenario)  # and $IMMUNESIM_APP_LATTICE
    except (ScenarioError, ValueError) as exc:
        _fail(str(exc))
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        _fail(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})")
    env = dict(os.environ)
    if scenario is not None:
        env[SCENARIO_ENV] = str(scenario.resolve())
    env.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "false")  # no usage reports
    env.setdefault("SOLARA_THEME_SHOW_BANNER", "false")  # the page's corner holds a control
    out.print(f"immunesim app: open http://{host}:{port} in a browser (Ctrl-C stops it)")
    sys.stdout.flush()
    # The server replaces this process, so Ctrl-C and signals reach it directly.
    os.execve(
        sys.executable,
        [
            sys.executable,
            "-m",
            "immunesim.viz.serve",  # solara run, with the static files compressed once
            "run",
            "immunesim.viz.app",
            "--host",
            host,
            "--port",
            str(port),
            "--production",
            "--no-open",
            "--no-check-version",
        ],
        env,
    )


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes only (a few minutes).")
    ] = False,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Results JSON.")] = None,
    steps: Annotated[int, typer.Option(help="Timed steps per configuration.", min=1)] = 48,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            help="Backend to measure (repeatable: --backend numba --backend cuda; default numba)."
        ),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(help="Lattice sides, comma-separated (default: the --quick or full set)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Only print the memory each configuration would take (nothing is allocated; "
            "the default sizes then reach 10^8 cells).",
        ),
    ] = False,
) -> None:
    """Throughput of the full model (cell-updates/s) per size and thread count, with the
    per-phase breakdown, the random-walk floor, bytes per site plus cell and the roofline;
    then the speed-up over the Mesa reference implementation, measured on the same cells."""
    from immunesim.backends import BACKENDS, BackendError, get_backend
    from immunesim.bench import (
        COMPARISON_COLUMNS,
        DRY_RUN_SIZES,
        FULL_SIZES,
        QUICK_SIZES,
        comparison_rows,
        run_bench,
    )

    backends = tuple(dict.fromkeys(backend or ["numba"]))
    try:
        for b in backends:
            if not dry_run:
                get_backend(b)
            elif b not in BACKENDS:
                raise BackendError(f"unknown backend {b!r}; expected one of {', '.join(BACKENDS)}")
        side = [int(v) for v in sizes.split(",")] if sizes else None
    except BackendError as exc:
        _fail(f"--backend: {exc}")
    except ValueError:
        _fail(f"--sizes: expected lattice sides as comma-separated integers, got {sizes!r}")
    if side is not None and any(v < 8 for v in side):
        _fail(f"--sizes: expected lattice sides of at least 8, got {sizes!r}")
    if dry_run:
        _bench_dry_run(side or list(DRY_RUN_SIZES), backends, out_file)
        return
    res = run_bench(
        side or (QUICK_SIZES if quick else FULL_SIZES),
        steps=steps,
        backends=backends,
        mesa="numba" in backends,
    )
    from rich import box

    table = Table(
        title=f"immunesim throughput on {res['hardware']['cpu']}",
        caption=f"JIT compilation ({res['jit_warm_up_seconds']:.1f} s) excluded; "
        "x floor: the full step's cost over a bare random walk's; bytes of "
        "state per site plus cell; x roofline: the step's time over that of reading and "
        "writing the whole state once at the STREAM bandwidth measured here (GB/s)",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for col in (
        "lattice",
        "cells",
        "backend",
        "updates/s",
        "x floor",
        "bytes",
        "GB/s",
        "x roofline",
        "slowest phase",
    ):
        table.add_column(col, justify="right", overflow="fold")
    for r in res["results"]:
        slow = max(r["phase_fraction"], key=r["phase_fraction"].get)
        where = "cuda" if r["backend"] != "numba" else f"numba x{r['threads']}"
        table.add_row(
            f"{r['lattice']}^2",
            f"{r['cells']:,}",
            where,
            f"{r['cell_updates_per_second']:.3g}",
            f"{r['cost_vs_floor']:.1f}",
            f"{r['bytes_per_site_plus_cell']:.0f}",
            f"{r['stream_bytes_per_second'] / 1e9:.1f}",
            f"{r['step_vs_roofline']:.1f}",
            f"{slow} {100 * r['phase_fraction'][slow]:.0f}%",
        )
    out.print(table)
    if "mesa_comparison" not in res:
        _write_bench(res, out_file)
        return
    cmp = Table(
        title="speed-up over the Mesa reference (same scenario, lattice and cells)",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for col in COMPARISON_COLUMNS:
        cmp.add_column(col, justify="right", overflow="fold")
    for row in comparison_rows(res["mesa_comparison"]):
        cmp.add_row(*row)
    out.print(cmp)
    _write_bench(res, out_file)


def _bench_dry_run(sizes: list[int], backends: tuple[str, ...], out_file: Path | None) -> None:
    """The table of ``immunesim bench --dry-run``: state bytes per configuration."""
    from rich import box

    from immunesim.bench import memory_estimate

    rows = [memory_estimate(size, b) for size in sizes for b in backends]
    table = Table(
        title="memory of the benchmark's state (estimated from the field tables, nothing "
        "allocated)",
        caption="cells: about 0.26 per site after the run-in; state: cell slots (a quarter "
        "more than the cells), sites, the molecular layers and the buffer that diffuses "
        "them in place (on a GPU also as many spare cell slots)",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for col in ("lattice", "cells", "backend", "slots", "state", "bytes per site + cell"):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        table.add_row(
            f"{r['lattice']}^2",
            f"{r['cells']:.2e}",
            r["backend"],
            f"{r['slots']:.2e}",
            f"{r['state_bytes'] / 1e9:.3g} GB",
            f"{r['bytes_per_site_plus_cell']:.0f}",
        )
    out.print(table)
    _write_bench({"dry_run": rows}, out_file)


def _write_bench(res: dict, out_file: Path | None) -> None:
    if out_file is not None:
        from immunesim.io import write_json

        write_json(out_file, res)
        out.print(f"wrote {out_file}")


cache_app = typer.Typer(
    no_args_is_help=True,
    help="The run-in cache: untreated run-ins kept so that runs start at the fork before "
    "their first therapy (see immunesim.runin).",
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info() -> None:
    """Where the run-in cache is, what it holds and its bound."""
    from immunesim.runin import RunInCache

    i = RunInCache().info()
    out.print(f"{'directory':>10}: {i['root']}")
    out.print(f"{'run-ins':>10}: {i['entries']} ({i['keys']} scenario contents)")
    out.print(
        f"{'size':>10}: {i['bytes'] / 1e6:.1f} MB of at most {i['max_bytes'] / 1e6:.0f} MB "
        "(IMMUNESIM_CACHE_MAX_MB)"
    )


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every cached run-in (runs then compute their run-in again, once)."""
    from immunesim.runin import RunInCache

    c = RunInCache()
    n = c.clear()
    out.print(f"removed {n} run-ins from {c.root}")


@app.command()
def schema() -> None:
    """Print the scenario file reference (every key, its type, default and unit)."""
    from immunesim.schema_doc import reference_markdown

    print(reference_markdown(), end="")


@app.command()
def info() -> None:
    """Print versions, available backends and threads."""
    import numba

    from immunesim import io
    from immunesim.backends import available

    for k, v in io.versions().items():
        out.print(f"{k:>12}: {v}")
    hw = io.hardware()
    out.print(f"{'cpu':>12}: {hw['cpu']} ({hw['cpu_count']} logical cores)")
    out.print(
        f"{'threads':>12}: {numba.get_num_threads()} numba threads "
        f"(set NUMBA_NUM_THREADS to change)"
    )
    for name, where in available().items():
        out.print(
            f"{'backend':>12}: {name} " + (f"available ({where})" if where else "not available")
        )


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """immunesim's own warnings (a saturated molecular layer) as one ``warning:`` line;
    others as Python shows them."""
    from immunesim.engine import SaturationWarning

    if issubclass(category, SaturationWarning):
        err.print(f"[bold yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main() -> None:
    """Entry point of the console script. A mistyped command line (unknown option, missing
    argument, a value of the wrong type) is bad input too: one ``error:`` line, exit 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):  # pragma: no cover - Ctrl-C outside a run
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # click's usage errors (typer may carry its own copy of click: matched by name)
        kinds = {c.__name__ for c in type(exc).__mro__}
        ctx = getattr(exc, "ctx", None)
        if "NoArgsIsHelpError" in kinds and ctx is not None:
            out.print(ctx.get_help(), markup=False, highlight=False)
            sys.exit(0)
        if "UsageError" not in kinds:
            raise
        cmd = ctx.command_path if ctx is not None else "immunesim"
        err.print(
            f"[bold red]error:[/] {escape(exc.format_message())} (see {escape(cmd)} --help)",  # type: ignore[attr-defined]
            soft_wrap=True,
        )
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
