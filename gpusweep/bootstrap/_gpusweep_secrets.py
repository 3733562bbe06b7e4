"""Secrets reach the trial's environment (W&B needs its key) but are never written by us.

One rule for both sides (stdlib only, no ``re`` at a trial's start-up): the orchestrator
masks records, messages and the trial's argv with it, the bootstrap masks the ``sys.argv``
that ``wandb.init`` copies into the run's metadata.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing in a trial
if TYPE_CHECKING:
    from collections.abc import Mapping

# Words in an environment variable's name that say it holds a secret (any case). Our own
# trial token is an identifier, not a credential, but it is hidden all the same.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
MASK = "***"


def is_secret_name(name: str) -> bool:
    """Whether a name (an environment variable's, or a sweep parameter's) says it holds a
    secret."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named variables, longest first (so overlapping ones mask fully)."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secret_values() if values is None else values:
        text = text.replace(value, MASK)
    return text


def masked_params(params: Mapping[str, object]) -> dict[str, object]:
    """``params`` with the value of every secret-named one (``api_token``, ``db.password``) as
    ``***``: for what we print. The records keep the values, as W&B's run config does:
    ``--resume`` proposes from them and a rerun needs them."""
    return {name: MASK if is_secret_name(name) else value for name, value in params.items()}


def trial_secret_values(params: Mapping[str, object],
                        environ: Mapping[str, str] | None = None) -> list[str]:
    """What to mask where a trial's own output may quote it (the tail the live table shows):
    the values of secret-named environment variables and params, longest first."""
    values = set(secret_values(environ))
    values.update(str(v) for k, v in params.items() if is_secret_name(k) and len(str(v)) >= 4)
    return sorted(values, key=len, reverse=True)


def redacted(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret-named environment variables masked."""
    values = secret_values()
    return [redact(arg, values) for arg in argv]
