"""gpusweep: W&B-compatible hyperparameter sweeps in which no trial can poison the GPU.

The orchestrator (``gpusweep.cli``, ``gpusweep.runner``) never imports torch. Trials use
``gpusweep.trial`` from inside their own subprocess.
"""

__version__ = "0.1.0"
