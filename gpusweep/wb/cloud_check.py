"""Before cloud mode calls wandb: is there an API key, and does the W&B server answer?

wandb itself fails late and slowly without these (a ``CommError`` after about 26 s without a
network), so both are checked first, each as one :class:`~gpusweep.errors.BadInput` line that
names the cause (exit 2). The key is looked up where wandb looks (``WANDB_API_KEY``,
``WANDB_IDENTITY_TOKEN_FILE``, ``.netrc``, wandb's settings) without contacting the server;
reachability is one TCP connection to the server (or to the HTTPS proxy) with a short timeout.
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

from gpusweep.errors import BadInput

CONNECT_TIMEOUT_S = 3.0


def check_cloud(option: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The W&B server URL, once a key was found and the server answered (else BadInput)."""
    base_url, has_key = credentials()
    if not has_key:
        raise BadInput(option, "", f"cloud mode needs a W&B API key for {base_url}: set "
                       "WANDB_API_KEY or run `wandb login` (or leave out --wandb/--sweep-id "
                       "to sweep offline)")
    problem = unreachable(base_url, timeout_s)
    if problem:
        raise BadInput(option, "", f"cloud mode cannot reach the W&B server: {problem}")
    return base_url


def credentials() -> tuple[str, bool]:
    """The server URL wandb would use and whether wandb would find credentials for it."""
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib.wbauth import wbnetrc

    settings = wandb_setup.singleton().settings
    base_url = settings.base_url
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return base_url, True
    if settings.api_key:
        return base_url, True
    try:
        return base_url, bool(wbnetrc.read_netrc_auth(host=base_url))
    except Exception:  # a malformed .netrc entry: wandb would reject it too
        return base_url, False


def unreachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why ``url``'s host cannot be reached with one TCP connection, or None.

    Name resolution has no timeout of its own, so the attempt runs in a daemon thread that
    is given up on after ``timeout_s``.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = _proxy(parts.scheme, host)
    if proxy:
        host, port = proxy
    if not host:
        return f"{url!r} has no host"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port}: {exc.strerror or exc}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if not outcome:
        return f"{host}:{port}: no answer within {timeout_s:g} s"
    return outcome[0]


def _proxy(scheme: str, host: str | None) -> tuple[str, int] | None:
    """The proxy (host, port) that requests would use for this scheme, if any."""
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if host and any(host.endswith(h.strip().lstrip(".")) for h in no_proxy.split(",")
                    if h.strip()):
        return None
    value = os.environ.get(f"{scheme.upper()}_PROXY") or os.environ.get(f"{scheme}_proxy")
    if not value:
        return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    return (parts.hostname, parts.port or 80) if parts.hostname else None
