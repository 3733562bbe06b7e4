"""Files that run inside trial processes; stdlib only. The launcher puts this directory first
on a trial's PYTHONPATH, so they are imported there under their top-level names;
``_gpusweep_contract`` (the names both sides agree on) and ``_gpusweep_secrets`` (the masking
rule) are imported by the orchestrator too, from this package."""

import importlib
import sys
from types import ModuleType


def loaded(name: str) -> ModuleType:
    """The module ``name`` of this directory as this process has it: the bootstrap's
    top-level instance inside a trial (its state, such as the leak baseline, exists once),
    else this package's."""
    return sys.modules.get(name) or importlib.import_module(f"{__name__}.{name}")
