"""Files a run or a pipeline step writes: atomically (a temp file renamed into place), so a
killed process never leaves a half-written file that looks finished."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a temp file and a rename, readable as the umask says (mkstemp
    alone would make it 0600: on a shared cluster, collaborators could not read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_marker(path: str | Path, info: dict) -> int:
    """A pipeline step's marker: ``info`` as JSON at ``path`` (atomically) and on stdout; exit 0."""
    atomic_write_text(Path(path), json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0
