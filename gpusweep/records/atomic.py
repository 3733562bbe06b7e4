"""Files that a reader never sees half-written: write a temporary file, then rename it."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text(path: str, text: str, durable: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same dir, os.replace).

    ``durable`` also fsyncs the data before the rename, so the file survives a power loss,
    not only a crash; files that can be rebuilt from the journal can skip that cost.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are for everyone
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~10x faster


def to_yaml(data: Any) -> str:
    """Plain data as block YAML, keys in the order given."""
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def write_yaml(path: str, data: Any) -> None:
    """Dump plain data as block YAML, atomically."""
    write_text(path, to_yaml(data))
