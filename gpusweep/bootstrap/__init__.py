"""Files that run inside trial processes; stdlib only. The launcher puts this directory first
on a trial's PYTHONPATH, so they are imported there under their top-level names;
``_gpusweep_contract`` (the names both sides agree on) and ``_gpusweep_secrets`` (the masking
rule) are imported by the orchestrator too, from this package."""
