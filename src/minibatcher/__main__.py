"""The ``minibatcher`` command (also ``python -m minibatcher``): ``demo``, ``batch-size``,
``bench``, ``info``.

Exit codes: 0 success; 1 the command ran and failed (a missing optional package, a benchmark
that failed, no benchmarks folder); 2 the command line was wrong (argparse's convention).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
BENCH_SCRIPTS = ("bench.py", "workers.py")
"""The benchmark scripts ``minibatcher bench`` runs, in order, when they exist."""


def _batch_sizes(text: str) -> list[int | None]:
    """Parse ``"1,16,128,full"``; ``full`` is the whole training set."""
    sizes: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("full", "all"):
            sizes.append(None)
            continue
        if not part.isdigit() or int(part) <= 0:
            raise argparse.ArgumentTypeError(
                f"batch sizes must be positive ints or 'full', separated by commas; got {part!r}"
            )
        sizes.append(int(part))
    return sizes


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}")
    return int(text)


def _plot_file(text: str) -> str:
    # checked before the demo trains for minutes, not when it saves the figure at the end
    folder = Path(text).expanduser().resolve().parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist ({folder})")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minibatcher`` command."""
    parser = argparse.ArgumentParser(
        prog="minibatcher",
        description="Fast, exact mini-batch loading for ML training loops.",
        epilog="Run 'minibatcher COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a small model with several batch sizes and compare them",
        description=(
            "Train a one-hidden-layer NumPy MLP on scikit-learn's bundled digits (nothing is "
            "downloaded) with mini-batch SGD fed by minibatcher, once per batch size, from the "
            "same initial weights for the same number of epochs, and print a table of steps, "
            "wall time, items/s and validation accuracy: how many items per mini-batch? "
            "Learning rates follow the linear scaling rule, lr = min(0.01 x batch size, 0.8). "
            "Needs: pip install 'minibatcher[examples]'."
        ),
    )
    demo.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 16, 128, None],
                      metavar="LIST",
                      help="comma-separated batch sizes; 'full' is the whole training set "
                           "(default: 1,16,128,full)")
    demo.add_argument("--epochs", type=_positive, default=20,
                      help="epochs per run (default: 20)")
    demo.add_argument("--hidden", type=_positive, default=64,
                      help="hidden units (default: 64)")
    demo.add_argument("--seed", type=_seed, default=0,
                      help="seed of the split, the initial weights and the shuffling (default: 0)")
    demo.add_argument("--plot", type=_plot_file, metavar="FILE.png",
                      help="save loss and accuracy curves per batch size (needs matplotlib)")
    demo.add_argument("--torch", action="store_true",
                      help="train the same model with torch instead of NumPy (needs torch)")
    demo.add_argument("--no-progress", action="store_true",
                      help="no progress bars (one line per run instead)")
    demo.add_argument("--no-suggest", action="store_true",
                      help="skip the measured suggestion (minibatcher.sizing) after the table")
    demo.add_argument("--suggest-seconds", type=_seconds, default=5.0, metavar="S",
                      help="time budget of the suggestion's measurements (default: 5)")

    size = sub.add_parser(
        "batch-size",
        help="measure which batch size to train the demo's model with",
        description=(
            "Run minibatcher.sizing.suggest_batch_size on the demo's model (a NumPy MLP on "
            "scikit-learn's digits) at its initial weights: memory ceiling, throughput curve "
            "and gradient noise scale, and the batch size B* = sqrt(B_noise alpha / beta) that "
            "minimises the predicted time to a target loss. Needs: pip install "
            "'minibatcher[examples]'."
        ),
    )
    size.add_argument("--seconds", type=_seconds, default=10.0,
                      help="time budget of the measurements (default: 10)")
    size.add_argument("--hidden", type=_positive, default=64, help="hidden units (default: 64)")
    size.add_argument("--seed", type=_seed, default=0, help="seed (default: 0)")
    size.add_argument("--no-progress", action="store_true", help="no progress bars")

    bench = sub.add_parser(
        "bench",
        help="run the side-by-side benchmarks (minibatcher, torch, the NumPy limit)",
        description=(
            "Run the benchmark scripts of the repository's benchmarks/ folder "
            f"({', '.join(BENCH_SCRIPTS)}): workloads W1-W7, each in a fresh process, side by "
            "side with PyTorch's DataLoader, printing items/s and ratios. The folder is not part "
            "of the installed package: run from a clone of the repository or pass --path."
        ),
    )
    bench.add_argument("--quick", action="store_true",
                       help="smaller workloads and fewer repeats: a rough table in seconds")
    bench.add_argument("--path", type=Path, metavar="DIR",
                       help="the benchmarks/ folder (default: the one next to this source tree)")
    bench.add_argument("--only", choices=[Path(s).stem for s in BENCH_SCRIPTS],
                       help="run only this script")

    sub.add_parser(
        "info",
        help="versions, CPUs, /dev/shm and start methods of this machine",
        description="Print what matters to a bug report or a performance question: the "
                    "versions of Python, NumPy, minibatcher, torch and jax, the CPU count, the "
                    "size of /dev/shm and the multiprocessing start methods.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 after --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = {"demo": _demo, "batch-size": _batch_size, "bench": _bench,
               "info": _info}[args.command]
    try:
        return handler(args)
    except ImportError as e:
        print(f"minibatcher {args.command}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"minibatcher {args.command}: interrupted", file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    from . import demo, demo_report

    if args.plot is not None:
        demo_report.require_matplotlib()  # fail before training, not after
    backend = "torch" if args.torch else "numpy"
    print(f"Training a 64-{args.hidden}-10 MLP ({backend}) on scikit-learn's digits, "
          f"{args.epochs} epochs per batch size, seed {args.seed}.", flush=True)
    results = demo.run_demo(args.batch_sizes, epochs=args.epochs, hidden=args.hidden,
                            seed=args.seed, backend=backend, progress=not args.no_progress)
    print()
    print(demo_report.format_table(results))
    print()
    print(demo_report.explain(results))
    if args.plot is not None:
        demo_report.save_plot(results, args.plot)
        print(f"\nSaved the curves to {args.plot}")
    if not args.no_suggest:
        print(f"\nMeasuring which batch size to use (minibatcher.sizing, "
              f"~{args.suggest_seconds:g} s)...", flush=True)
        suggestion = demo.suggest(hidden=args.hidden, seed=args.seed,
                                  seconds=args.suggest_seconds, progress=not args.no_progress)
        print()
        print(suggestion)
        print()
        print(demo_report.agreement(suggestion, results))
    return EXIT_OK


def _batch_size(args: argparse.Namespace) -> int:
    from . import demo

    print(f"Measuring which batch size to train a 64-{args.hidden}-10 MLP (NumPy) on "
          f"scikit-learn's digits with (~{args.seconds:g} s)...", flush=True)
    suggestion = demo.suggest(hidden=args.hidden, seed=args.seed, seconds=args.seconds,
                              progress=not args.no_progress)
    print()
    print(suggestion)
    return EXIT_OK


def find_benchmarks(path: Path | None) -> Path:
    """The benchmarks folder: ``path``, or ``benchmarks/`` at the root of this source tree."""
    if path is not None:
        if not path.is_dir():
            raise FileNotFoundError(f"--path {path}: no such folder")
        return path
    here = Path(__file__).resolve().parent  # src/minibatcher
    for candidate in (here.parent.parent / "benchmarks", Path.cwd() / "benchmarks"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "no benchmarks/ folder found: it is not part of the installed package. Run "
        "'minibatcher bench' from a clone of the repository (pip install -e .), or pass "
        "--path /path/to/minibatcher/benchmarks"
    )


def _bench(args: argparse.Namespace) -> int:
    try:
        folder = find_benchmarks(args.path)
    except FileNotFoundError as e:
        print(f"minibatcher bench: {e}", file=sys.stderr)
        return EXIT_FAILURE
    names = [s for s in BENCH_SCRIPTS if args.only is None or Path(s).stem == args.only]
    scripts = [folder / name for name in names if (folder / name).is_file()]
    if not scripts:
        print(f"minibatcher bench: none of {', '.join(names)} is in {folder}", file=sys.stderr)
        return EXIT_FAILURE
    failed = []
    for script in scripts:
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        print(f"$ {' '.join(command)}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"minibatcher bench: {', '.join(failed)} failed (see above)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _shm_size() -> str:
    try:
        usage = shutil.disk_usage("/dev/shm")
    except OSError:
        return "absent (process workers fall back to other transport or need /dev/shm)"
    return f"{usage.total / 2**20:,.0f} MiB ({usage.free / 2**20:,.0f} MiB free)"


def info_lines() -> list[str]:
    """What ``minibatcher info`` prints, one fact per line."""
    from . import __version__

    methods = multiprocessing.get_all_start_methods()
    try:
        from .transport.factory import choose_start_method

        default = choose_start_method(None)
    except ImportError:
        default = methods[0]
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return [
        f"minibatcher   {__version__}",
        f"python        {platform.python_version()} ({platform.python_implementation()}, "
        f"{sys.executable})",
        f"platform      {platform.platform()}",
        f"numpy         {_version('numpy')}",
        f"torch         {_version('torch')}",
        f"jax           {_version('jax')}",
        f"tqdm          {_version('tqdm')}",
        f"scikit-learn  {_version('scikit-learn')}",
        f"cpus          {cpus} ({usable} usable by this process)",
        f"/dev/shm      {_shm_size()}",
        f"start methods {', '.join(methods)} (minibatcher's default here: {default})",
    ]


def _info(args: argparse.Namespace) -> int:
    print("\n".join(info_lines()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
