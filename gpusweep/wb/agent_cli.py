"""``gpusweep agent SWEEP_ID``: join a W&B sweep with ``wandb agent``'s command line.

It is ``gpusweep --sweep-id SWEEP_ID`` spelled as W&B's own CLI spells it (wandb 0.31,
``wandb/cli/cli.py``, ``agent``): the sweep id as the argument, ``ENTITY/PROJECT/ID`` or the
bare id, ``--count``, ``-p/--project``, ``-e/--entity``. The command line is translated into
the main one, so there is a single implementation and a single set of checks.

``wandb agent``'s ``--forward-signals`` is accepted and changes nothing: every trial's whole
process tree is always signalled, then killed after ``isolation.stop.grace_s``. Its
``--term-timeout`` and ``--max-consecutive-failed-runs`` are refused with the sweep YAML key
that does the job here, rather than silently ignored.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from gpusweep.errors import EXIT_BAD_INPUT
from gpusweep.slots import GPUS_HELP

DESCRIPTION = """Start a sweep agent, as `wandb agent` does: ask the W&B server for the sweep's
runs and run each, every trial isolated in its own process tree and proven GPU-clean
before the next one starts.

The agent exits when the sweep completes, is stopped or cancelled, or when the --count
limit is reached. The sweep ID can include the entity and project path
(entity/project/sweep_id) or be the eight-character ID."""

EXAMPLES = """examples:
  {prog} team-awesome/sweeps-project/wbyz9876
  {prog} --count 10 wbyz9876          (the project from -p or WANDB_PROJECT)
  {prog} --gpus all ENTITY/PROJECT/ID     one run per GPU at once
  {prog} --sweep-config sweep.yaml ENTITY/PROJECT/ID    with the file's isolation: keys"""

REFUSED = {
    "--term-timeout": "the grace period before SIGKILL is isolation.stop.grace_s in the sweep "
                      "YAML (give it with --sweep-config)",
    "--max-consecutive-failed-runs": "trials that all fail fast end the sweep by "
                                     "isolation.flapping in the sweep YAML (give it with "
                                     "--sweep-config)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str) -> argparse.ArgumentParser:
    """``wandb agent``'s options, then gpusweep's own (slots, GPUs, where records go)."""
    p = _Parser(prog=prog, description=DESCRIPTION, epilog=EXAMPLES.format(prog=prog),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_id", metavar="SWEEP_ID", help="ENTITY/PROJECT/ID, or ID")
    p.add_argument("--project", "-p", help="Set the project to upload runs to.")
    p.add_argument("--entity", "-e", help="Set the entity to scope the project to.")
    p.add_argument("--count", metavar="N", help="Maximum number of runs this agent will "
                   "execute. Continues until the sweep completes if not set.")
    p.add_argument("--forward-signals", "-f", action="store_true",
                   help="Accepted for wandb agent's command lines; always on here.")
    for option in REFUSED:
        p.add_argument(option, metavar="N", help=argparse.SUPPRESS)
    own = p.add_argument_group("gpusweep's own")
    own.add_argument("--slots", metavar="N", help="run up to N of the sweep's runs at once "
                     "(default: one per GPU, or 1)")
    own.add_argument("--gpus", metavar="0,1|all", help=GPUS_HELP)
    own.add_argument("--log-dir", metavar="DIR", help="records go to DIR/<sweep-id>/ "
                     "(default ./log)")
    own.add_argument("--sweep-config", metavar="FILE", help="a sweep YAML whose isolation: "
                     "keys apply (the server keeps only W&B's keys)")
    own.add_argument("--config_file", metavar="FILE", help="replace --config_file's value "
                     "in every run's command (or add it)")
    own.add_argument("--quiet", action="store_true", help="print only the summary line")
    return p


def sweep_argv(argv: list[str], prog: str = "gpusweep agent") -> list[str]:
    """The main command line that does what this ``agent`` command line asks."""
    p = parser(prog)
    args = p.parse_args(argv)
    for option, instead in REFUSED.items():
        if getattr(args, option[2:].replace("-", "_")) is not None:
            p.error(f"{option} is not an option here: {instead}")
    out = ["--sweep-id", args.sweep_id]
    for name in ("project", "entity", "count", "slots", "gpus", "log_dir", "sweep_config",
                 "config_file"):
        value = getattr(args, name)
        if value is not None:
            flag = "--config_file" if name == "config_file" else "--" + name.replace("_", "-")
            out += [flag, value]
    return out + (["--quiet"] if args.quiet else [])
