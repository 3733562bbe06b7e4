"""The orchestrator's import of the one secret-masking rule, which lives beside the bootstrap.

The rule is :mod:`gpusweep.bootstrap._gpusweep_secrets` (stdlib only), so that the trial's
bootstrap masks with the same words as the orchestrator does; this module only gives it the
orchestrator's name.
"""

from gpusweep.bootstrap._gpusweep_secrets import (
    MASK,
    is_secret_name,
    masked_params,
    redact,
    secret_values,
    trial_secret_values,
)

__all__ = ["MASK", "is_secret_name", "masked_params", "redact", "secret_values",
           "trial_secret_values"]
