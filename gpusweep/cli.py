"""``gpusweep`` (also ``python -m gpusweep`` and ``tools/sweep.py``): parse the command line,
validate everything, run the sweep.

Exit codes: 0 the sweep ran to its end (whatever single trials did); 2 bad input, before any
trial starts; 3 aborted because the GPU would not come back clean (``on_dirty: abort``);
4 the first trials all failed fast (``isolation.flapping``); 5 the records could not be
written; 130 interrupted (Ctrl-C, SIGTERM, SIGHUP) after a clean stop.

Subcommands, each its own module: ``report SWEEP_DIR`` draws a sweep's report
(gpusweep.report.build); ``sync SWEEP_DIR`` puts an offline sweep onto W&B (gpusweep.wb.sync);
``agent SWEEP_ID`` joins a W&B sweep as ``wandb agent`` does (gpusweep.wb.agent_cli);
``doctor`` says what holds on this machine (gpusweep.doctor).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from gpusweep import preflight
from gpusweep.config import SweepSpec, load_sweep, project_problem
from gpusweep.errors import EXIT_BAD_INPUT, BadInput
from gpusweep.records.layout import SweepLayout
from gpusweep.slots import GPUS_HELP

DRY_RUN_TRIALS = 5
PROG = "gpusweep"
SUBCOMMANDS = ("agent", "report", "sync", "doctor")  # each dispatched by main() below
COMMANDS = """commands:
  {prog} --sweep-config sweep.yaml          run a sweep here (records under ./log/<sweep-id>/)
  {prog} --wandb --sweep-config sweep.yaml  create the sweep on W&B's server and run it
  {prog} agent ENTITY/PROJECT/SWEEP_ID      join a W&B sweep, like `wandb agent`
  {prog} report SWEEP_DIR                   draw a sweep's memory and metrics (report.md)
  {prog} sync SWEEP_DIR                     put an offline sweep onto W&B, with its sweep page
  {prog} doctor [--json]                    what holds on this machine, before a long sweep

Each command has its own --help."""


class _Parser(argparse.ArgumentParser):
    """One line for a bad command line (argparse's usage block buries the error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    from gpusweep import __version__

    parser = _Parser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a W&B sweep with every trial isolated in its own process tree, "
        "cleaned up and proven GPU-clean before the next one starts.",
        epilog=COMMANDS.format(prog=prog))
    parser.add_argument("--version", action="version", version=f"gpusweep {__version__}")
    parser.add_argument("--sweep-config", metavar="FILE", help="W&B sweep YAML (+ isolation:)")
    parser.add_argument("--count", type=int, metavar="N", help="run at most N trials now")
    parser.add_argument("--log-dir", default="log", metavar="DIR",
                        help="where sweeps live: <log-dir>/<sweep-id>/ (default ./log)")
    parser.add_argument("--resume", metavar="SWEEP_ID", help="continue a sweep from its journal")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and print the first trials' params and argv, run nothing")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--project", metavar="NAME", help="W&B project of the trial runs")
    parser.add_argument("--slots", type=_slots, metavar="N|auto",
                        help="run up to N trials at once (default: one per GPU, or 1); auto: "
                        "per device as many as memory, utilization and the host allow")
    parser.add_argument("--gpus", metavar="0,1|all",
                        help=GPUS_HELP)
    parser.add_argument("--profile-leaks", action="store_true",
                        help="run trials with tracemalloc; top growing lines in leaks.txt")
    parser.add_argument("--wandb", action="store_true",
                        help="cloud mode: create the sweep on the W&B server and run its trials")
    parser.add_argument("--sweep-id", metavar="ENTITY/PROJECT/ID",
                        help="cloud mode: join this W&B sweep (from any number of machines)")
    parser.add_argument("--entity", metavar="NAME", help="W&B entity of the sweep's runs")
    parser.add_argument("--config_file", metavar="FILE",
                        help="replace --config_file's value in every trial's command (or add "
                        "it); kept with the sweep for --resume")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    if isinstance(args.slots, int) and args.slots < 1:
        parser.error("--slots must be at least 1")
    if args.project is not None and project_problem(args.project):
        parser.error(f"--project {args.project!r}: {project_problem(args.project)}")
    if not args.sweep_config and not args.resume and not args.sweep_id:
        parser.error("give --sweep-config FILE (or --resume SWEEP_ID, or --sweep-id ID), or "
                     f"a command: {', '.join(SUBCOMMANDS)}")
    if (args.wandb or args.sweep_id) and (args.resume or args.dry_run):
        parser.error("--resume and --dry-run are for local sweeps; the W&B server keeps the "
                     "state of a cloud sweep")
    if (args.wandb or args.sweep_id) and args.slots == "auto":
        parser.error("--slots auto is for local sweeps: cloud mode registers a fixed number "
                     "of W&B agents; give --slots N")
    if args.wandb and (args.sweep_id or not args.sweep_config):
        parser.error("--wandb creates a sweep from --sweep-config FILE; to join one, give "
                     "only --sweep-id")
    return args


def _slots(text: str) -> int | str:
    """``--slots``: a count (checked to be at least 1 after parsing), or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None
    return count


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The whole command line; ``prog`` is how messages name the command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[:1]
    if command == ["report"]:
        from gpusweep.report import build as report

        return report.main(argv[1:], prog=f"{prog} report")
    if command == ["sync"]:
        from gpusweep.wb import sync

        return sync.main(argv[1:], prog=f"{prog} sync")
    if command == ["doctor"]:
        from gpusweep import doctor

        return doctor.main(argv[1:], prog=f"{prog} doctor")
    if command == ["agent"]:
        from gpusweep.wb.agent_cli import sweep_argv

        argv = sweep_argv(argv[1:], prog=f"{prog} agent")
    args = parse_args(argv, prog)
    try:
        if args.wandb or args.sweep_id:
            from gpusweep.wb.cloud_cli import run_cloud

            return run_cloud(args)
        spec = _load_spec(args)
        if args.dry_run:
            return dry_run(spec, args)
        return _run(spec, args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _load_spec(args: argparse.Namespace) -> SweepSpec:
    if args.resume:
        layout = SweepLayout(os.path.join(args.log_dir, args.resume))
        if not os.path.exists(layout.config_yaml):
            raise BadInput(layout.dir, "--resume", "no such sweep (its config.yaml is missing)")
        spec = load_sweep(layout.config_yaml)
        if args.sweep_config and load_sweep(args.sweep_config).raw != spec.raw:
            raise BadInput(args.sweep_config, "--resume",
                           f"differs from the config sweep {args.resume} was started with")
        _resume_config_file(args)
        return spec
    spec = load_sweep(args.sweep_config)
    args.config_file = preflight.config_file(args.config_file)
    preflight.check_executable(spec, args.config_file)
    return spec


def _resume_config_file(args: argparse.Namespace) -> None:
    """A resumed sweep keeps the ``--config_file`` it was started with."""
    from gpusweep.records.reader import read_header

    header = read_header(SweepLayout.of(args.log_dir, args.resume).dir)
    stored = header.config_file if header is not None else None
    given = preflight.config_file(args.config_file)
    if given and stored and given != stored:
        raise BadInput(args.config_file, "--resume", f"sweep {args.resume} was started with "
                       f"--config_file {stored}")
    args.config_file = given or stored


def dry_run(spec: SweepSpec, args: argparse.Namespace) -> int:
    """Print the first proposed trials (params and exact argv); start nothing, write nothing."""
    from gpusweep.controller import Controller, RunView
    from gpusweep.process.launcher import build_argv, with_config_file
    from gpusweep.redact import masked_params, redact
    from gpusweep.slots import choose_devices
    from gpusweep.status import EngineState

    choose_devices(args.gpus)  # a bad --gpus fails here too, not only in the real run
    controller = Controller(spec, seed="dry-run")
    views: list[RunView] = []
    limit = min(x for x in (args.count, spec.run_cap, DRY_RUN_TRIALS) if x is not None)
    print(f"{spec.path}: valid {spec.method} sweep"
          + (f", metric {spec.metric.name} ({spec.metric.goal})" if spec.metric else "")
          + (", hyperband on" if spec.early_terminate else ""))
    if spec.method != "grid":
        print("(a sample: the real sweep seeds its draws with its own id, so its values differ)")
    for i in range(limit):
        params = controller.propose(views)
        if params is None:
            break
        views.append(RunView(f"dry-{i}", params, EngineState.PENDING))
        shown = masked_params(params)  # a secret-named param's value is never printed
        argv = build_argv(spec.command, spec.program, shown, "<trial-dir>/args.json")
        if args.config_file:
            argv = with_config_file(argv, args.config_file)
        print(f"trial {i + 1}: {shown}")
        print(f"  argv: {[redact(token) for token in argv]}")
    return 0


def _run(spec: SweepSpec, args: argparse.Namespace) -> int:
    from gpusweep.display import LiveDisplay, QuietDisplay
    from gpusweep.runner import SweepRunner
    from gpusweep.session import SweepOptions
    from gpusweep.slots import choose_devices
    from gpusweep.wb.env import resolve_entity, resolve_project

    devices = choose_devices(args.gpus)
    options = SweepOptions(log_dir=args.log_dir, count=args.count, resume=args.resume,
                           project=resolve_project(args.project, spec.project, spec.program),
                           entity=resolve_entity(args.entity, spec.entity),
                           profile_leaks=args.profile_leaks, slots=args.slots,
                           config_file=args.config_file)
    display = QuietDisplay() if args.quiet else LiveDisplay()
    runner = SweepRunner(spec, options, devices, display)
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
