"""``gpusweep doctor``: what holds on this machine, and what does not, before a long sweep.

The facts come from :mod:`gpusweep.doctor_probe` (the same modules a sweep uses); each check
here is a pure function of them that says what it found and what that means for what a sweep
promises: every process of a trial ended with it, the GPU proven back to its baseline before
the next trial, and each trial's memory recorded. Levels:

- ``ok``: the guarantee holds as the README describes it;
- ``note``: how it will go here (no GPU, MIG, other users, W&B offline), nothing lost;
- ``limited``: it holds by a weaker means, or a figure will be recorded as unknown;
- ``off``: a guarantee does not hold here (or a sweep would refuse to start): exit 1.

Nothing secret is printed: the facts hold no key, and every line goes through
:func:`gpusweep.redact.redact` as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gpusweep.config import load_sweep
from gpusweep.doctor_probe import (
    ContainmentFacts,
    Facts,
    GpuFacts,
    ListedProcess,
    NvmlFacts,
    WandbFacts,
)
from gpusweep.errors import EXIT_BAD_INPUT, BadInput
from gpusweep.gpu.device import Namespace

EXIT_OK = 0
EXIT_OFF = 1
DEVICE_TOTALS = "GPU memory per trial: unknown here, device totals only"


class Level(Enum):
    OK = "ok"
    NOTE = "note"
    LIMITED = "limited"
    OFF = "off"


@dataclass(frozen=True)
class Line:
    """One finding: what was found, and what it means for the guarantees."""

    topic: str
    level: Level
    found: str
    means: str


# -- GPUs ---------------------------------------------------------------------------------
def check_nvml(nvml: NvmlFacts) -> list[Line]:
    if not nvml.loaded:
        if nvml.bad_module:
            return [Line("NVML", Level.OFF, nvml.error, "a sweep refuses to start (exit 2)")]
        if nvml.problems:  # a driver is there but NVML fails: CUDA may still work
            return [Line("NVML", Level.OFF, nvml.error or "NVML failed", "a sweep sees no "
                         "GPU, while trials may still use one: no GPU would be checked")]
        return [Line("NVML", Level.NOTE, f"no GPU: {nvml.error}", "trials run on the CPU; "
                     "every process of a trial is still ended with it")]
    lines = [Line("NVML", Level.OK, f"driver {nvml.driver or 'unknown'}, NVML "
                  f"{nvml.nvml_version or 'unknown'} ({nvml.module})",
                  "the orchestrator reads the GPUs through NVML only (no CUDA context)")]
    lines += [Line("GPUs", Level.LIMITED, problem, "trials never run on it")
              for problem in nvml.problems]
    lines += check_visible(nvml)
    for gpu in nvml.gpus:
        lines += check_gpu(gpu)
    lines.append(check_namespace([p for gpu in nvml.gpus for p in gpu.processes or ()]))
    return lines


def check_visible(nvml: NvmlFacts) -> list[Line]:
    """``CUDA_VISIBLE_DEVICES``: which devices it leaves, or why a sweep would refuse it."""
    value = "unset" if nvml.visible_env is None else repr(nvml.visible_env)
    if nvml.visible_problem:
        return [Line("CUDA_VISIBLE_DEVICES", Level.OFF, f"{value}: {nvml.visible_problem}",
                     "a sweep refuses to start (exit 2) rather than run on fewer GPUs than "
                     "were named")]
    left = [gpu.label for gpu in nvml.gpus if gpu.visible]
    if nvml.gpus and not left:
        return [Line("CUDA_VISIBLE_DEVICES", Level.NOTE, f"{value}: no GPU left to us",
                     "trials run on the CPU")]
    return [Line("CUDA_VISIBLE_DEVICES", Level.OK, f"{value}: devices {', '.join(left)} are "
                 "ours", "trials get only these (--gpus picks among them)")]


def check_gpu(gpu: GpuFacts) -> list[Line]:
    topic = f"GPU {gpu.label}"
    if not gpu.visible:
        return [Line(topic, Level.NOTE, f"{gpu.name}, hidden by CUDA_VISIBLE_DEVICES",
                     "not ours: trials never run on it")]
    size = "?" if gpu.total_mb is None else f"{gpu.total_mb:,.0f}"
    used = "?" if gpu.used_mb is None else f"{gpu.used_mb:,.0f}"
    found = f"{gpu.name}, {used} of {size} MB used"
    if gpu.used_mb is None:
        lines = [Line(topic, Level.OFF, f"{found}; memory unreadable: {gpu.error}",
                      "the GPU cannot be proven clean between trials (clean: null)")]
    else:
        lines = [Line(topic, Level.OK, found, "its memory is proven back to the baseline "
                      "before each next trial")]
    if gpu.mig:
        lines.append(Line(topic, Level.NOTE, "a MIG instance (MIG mode on)", "one trial per "
                          "instance; NVML lists its processes without a figure: GPU memory "
                          "per trial: unknown here, the instance's totals only"))
    lines.append(check_queries(topic, gpu))
    others = [p for p in gpu.processes or () if p.ours is not True]
    if others:
        known = [p.mb for p in others if p.mb is not None]
        held = f", {sum(known):,.0f} MB" if known else ""
        lines.append(Line(topic, Level.NOTE, f"{len(others)} process(es) not ours (another "
                          f"user's, or not visible here){held}",
                          "their memory is foreign: its change since the baseline is never "
                          "counted as a trial's residual"))
    return lines


def check_queries(topic: str, gpu: GpuFacts) -> Line:
    """Which per-process queries this driver and binding answer."""
    if gpu.queries is None or gpu.processes is None:
        return Line(topic, Level.LIMITED, f"NVML's process lists cannot be read "
                    f"({gpu.error or 'no query answers'})", f"{DEVICE_TOTALS}; the "
                    "trial's holders are found by their device files")
    answered = ", ".join(f"{kind} {_version(name)}" for kind, name in gpu.queries.items())
    return Line(topic, Level.OK, f"process queries: {answered}",
                "each process's memory is read (merged over the lists by max)")


def _version(query: str | None) -> str:
    if query is None:
        return "not supported"
    return query.rsplit("_", 1)[1] if query.endswith(("_v2", "_v3")) else "plain (v1 or v3)"


def pid_namespace(processes: Sequence[ListedProcess]) -> Namespace:
    """Whether NVML's PIDs are ours, from the processes it lists now.

    MATCHED: one of them holds a CUDA context here. FOREIGN: every one is absent here or holds
    no context here (host PIDs seen from a container). UNKNOWN: nothing listed, or processes
    whose files we may not read (another user's).
    """
    if not processes:
        return Namespace.UNKNOWN
    if any(p.context is True for p in processes):
        return Namespace.MATCHED
    if all(p.context is False for p in processes):
        return Namespace.FOREIGN
    return Namespace.UNKNOWN


def check_namespace(processes: Sequence[ListedProcess]) -> Line:
    found = pid_namespace(processes)
    if found is Namespace.MATCHED:
        return Line("PID namespace", Level.OK, "NVML's PIDs are ours",
                    "GPU memory is attributed to each trial's processes (attribution: pid)")
    if found is Namespace.FOREIGN:
        return Line("PID namespace", Level.LIMITED, "NVML lists PIDs that are not ours (a "
                    "container without --pid=host)", f"{DEVICE_TOTALS}; holders found by "
                    "their device files (attribution: device_files)")
    return Line("PID namespace", Level.NOTE, "cannot tell yet (no process of ours on a GPU "
                "to compare)", "a sweep learns it from its first trial; in a container "
                f"without --pid=host: {DEVICE_TOTALS}")


# -- containment --------------------------------------------------------------------------
def check_containment(facts: ContainmentFacts) -> list[Line]:
    if facts.subreaper:
        lines = [Line("subreaper", Level.OK, "prctl(PR_SET_CHILD_SUBREAPER) works",
                      "every orphan of a trial (double fork, setsid) stays in its launcher's "
                      "tree and is ended with it")]
    else:
        lines = [Line("subreaper", Level.OFF, f"unavailable: {facts.subreaper_error}",
                      "a trial's detached processes can escape its tree")]
    group = facts.cgroup
    if group.kind == "cgroup" and group.memory:
        lines.append(Line("cgroup v2", Level.OK, f"trial cgroups under {group.base}",
                          "cgroup.kill ends a trial's processes at once; memory.peak and "
                          "memory.max are used"))
    elif group.kind == "cgroup":
        lines.append(Line("cgroup v2", Level.LIMITED, f"trial cgroups under {group.base}; "
                          f"{group.note}", "cgroup.kill is used; host memory is sampled"))
    else:
        lines.append(Line("cgroup v2", Level.LIMITED, f"not used: {group.note}",
                          "the subreaper alone holds a trial's tree; host memory is sampled "
                          "(no memory.peak, no kernel memory limit)"))
    return lines


# -- W&B ----------------------------------------------------------------------------------
def check_wandb(facts: WandbFacts) -> list[Line]:
    mode = (facts.mode or "").lower()
    if mode == "disabled":
        lines = [Line("W&B mode", Level.NOTE, "WANDB_MODE=disabled", "no W&B runs: the "
                      "records and the table only; sync has nothing to upload")]
    elif mode == "online":
        lines = [Line("W&B mode", Level.NOTE, "WANDB_MODE=online", "trial runs stream to "
                      f"{facts.base_url}")]
    else:
        lines = [Line("W&B mode", Level.NOTE, f"WANDB_MODE={facts.mode or 'unset'}",
                      "trial runs are written offline in the sweep dir; `gpusweep sync` "
                      "uploads them")]
    if facts.credentials is None:
        lines.append(Line("W&B login", Level.LIMITED, f"cannot tell: {facts.credentials_error}",
                          "cloud mode (--wandb, agent) may fail at start"))
    elif facts.credentials:
        lines.append(Line("W&B login", Level.OK, f"credentials found for {facts.base_url}",
                          "cloud mode (--wandb, agent) and sync can run"))
    else:
        lines.append(Line("W&B login", Level.NOTE, f"no credentials for {facts.base_url}",
                          "local sweeps run offline; cloud mode and sync need `wandb login`"))
    entity = f", entity {facts.entity}" if facts.entity else ""
    lines.append(Line("W&B project", Level.NOTE, f"{facts.project} ({facts.project_from})"
                      f"{entity}", "where a sweep started here logs, unless --project or "
                      "the sweep file says otherwise"))
    if facts.service is not None:
        if facts.service_alive:
            lines.append(Line("WANDB_SERVICE", Level.NOTE, f"set, a live service "
                              f"({facts.service})", "never passed to trials"))
        else:
            lines.append(Line("WANDB_SERVICE", Level.LIMITED, f"stale ({facts.service}: "
                              "gone or unreadable)", "trials never get it, but wandb calls "
                              "from this shell (cloud mode, sync) would fail: unset it"))
    return lines


def check(facts: Facts) -> list[Line]:
    return check_nvml(facts.nvml) + check_containment(facts.containment) \
        + check_wandb(facts.wandb)


def exit_code(lines: Sequence[Line]) -> int:
    return EXIT_OFF if any(line.level is Level.OFF for line in lines) else EXIT_OK


# -- output -------------------------------------------------------------------------------
def render(lines: Sequence[Line]) -> str:
    out = []
    for line in lines:
        out.append(f"{line.level.value:8} {line.topic}: {line.found}")
        out.append(f"{'':8}   -> {line.means}")
    off = sum(line.level is Level.OFF for line in lines)
    out.append(f"{off} guarantee(s) off here" if off else "every guarantee holds here "
               "(see limited/note lines for what is recorded as unknown)")
    return "\n".join(out)


def as_json(facts: Facts, lines: Sequence[Line]) -> str:
    data = {"exit": exit_code(lines),
            "lines": [{**dataclasses.asdict(line), "level": line.level.value}
                      for line in lines],
            "facts": dataclasses.asdict(facts)}
    return json.dumps(data, indent=1, default=str)


def main(argv: Sequence[str], prog: str = "gpusweep doctor") -> int:
    """Print what holds here; 0, or 1 when a guarantee is off."""
    from gpusweep.doctor_probe import gather
    from gpusweep.redact import redact

    parser = argparse.ArgumentParser(prog=prog, description="What holds on this machine "
                                     "and what does not, before a long sweep: GPUs, PID "
                                     "namespace, process tracking, W&B. Exit 0, or 1 when "
                                     "a guarantee is off.")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    parser.add_argument("--sweep-config", metavar="FILE", help="the sweep file to run: the "
                        "W&B project and entity as that sweep would use them")
    args = parser.parse_args(list(argv))
    try:
        sweep = load_sweep(args.sweep_config) if args.sweep_config else None
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    facts = gather(sweep=sweep)
    lines = check(facts)
    print(redact(as_json(facts, lines) if args.json else render(lines)))
    sys.stdout.flush()
    return exit_code(lines)
