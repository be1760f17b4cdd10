"""A run folder is owned by one config.

Before a run writes ``--out`` it claims the folder: it takes a lock (two runs never write one
folder at once), records which config owns it (``.owner.json``), and checks what is there:

- the same config, finished: nothing to do (the command says so and exits 0);
- the same config, not finished (interrupted, diverged, failed, killed): go on; a checkpoint
  resumes it, and a stale ``run.json`` is removed first, so it never describes metrics that
  are not its run's;
- another config's record or checkpoint: refused, naming both configs, unless ``overwrite``,
  which first moves the old record aside into ``.replaced/<time>/`` (never half-replaced);
  ``overwrite`` also trains a finished run again (moved aside the same way), and never stops
  an unfinished run of the same config from resuming.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from .errors import TSSMError

OWNER = ".owner.json"
LOCK = ".lock"
REPLACED = ".replaced"
#: What a run writes into its folder (and ``overwrite`` moves aside).
RECORD = ("run.json", "metrics.csv", "checkpoint", OWNER)


class RunFolderError(TSSMError):
    """The run folder cannot be used for this run."""


class RunFolder:
    """``out`` claimed by the config whose hash is ``config_hash`` (see the module docstring)."""

    def __init__(self, out: str | Path, config_hash: str, config: dict):
        self.out, self.hash, self.config = Path(out), config_hash, config
        self._lock_fd: int | None = None

    # -- claiming -----------------------------------------------------------------------
    def claim(self, *, overwrite: bool = False, lock: bool = True) -> str | None:
        """Lock and check the folder; returns why there is nothing to do, or None to train."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            what = "it is a file, not a folder" if self.out.is_file() else (e.strerror or str(e))
            raise RunFolderError(f"cannot write the run folder {self.out}: {what}; choose another --out") from None
        if lock:
            self._lock()
        owner = self._owner()
        status = self._status()
        has_record = status is not None or (self.out / "metrics.csv").exists() or any(
            (self.out / "checkpoint").glob("rank*.pt"))
        if owner is not None and owner != self.hash and has_record:
            if not overwrite:
                raise RunFolderError(
                    f"{self.out} holds a run of another config (config hash {owner}, status {status or 'unfinished'}"
                    f"{self._differences()}); this one is {self.hash}. Use another --out, or --overwrite to move the "
                    f"old record to {self.out / REPLACED}/ and start again")
            self.move_aside()
        elif status == "finished" and overwrite:
            self.move_aside()
        elif status == "finished":
            return f"{self.out} already holds this config's finished run; nothing to do (--overwrite trains it again)"
        elif status is not None:
            (self.out / "run.json").unlink()  # a stale status must not describe the new metrics
        self._write_owner()
        return None

    def _lock(self) -> None:
        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"another run is writing {self.out} right now; wait for it to end, "
                                     f"or use another --out") from None
            raise
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- what is there ------------------------------------------------------------------
    def _owner(self) -> str | None:
        """The config hash that owns the folder: .owner.json, else an older run.json's."""
        for name, key in ((OWNER, "config_hash"), ("run.json", "config_hash")):
            try:
                value = json.loads((self.out / name).read_text()).get(key)
            except (OSError, ValueError, AttributeError):
                continue
            if value:
                return str(value)
        return None

    def _differences(self) -> str:
        """``, differs in: lr, data_identity`` between the owner's recorded config and this one
        (empty when the owner recorded none)."""
        try:
            theirs = json.loads((self.out / OWNER).read_text()).get("config") or {}
        except (OSError, ValueError, AttributeError):
            return ""
        if not isinstance(theirs, dict) or not theirs:
            return ""
        keys = sorted(k for k in set(theirs) | set(self.config) if k not in ("out",)
                      and theirs.get(k) != self.config.get(k))
        older = "data_identity" not in theirs  # recorded before the hash covered the data
        named = [("the data files' content" if k == "data_identity" else k) for k in keys
                 if not (older and k == "data_identity")]
        if named:
            return f", differs in: {', '.join(named)}"
        return ", recorded by an older tssm whose hash covered other fields" if older else ", the same settings"

    def _status(self) -> str | None:
        try:
            return str(json.loads((self.out / "run.json").read_text()).get("status"))
        except (OSError, ValueError, AttributeError):
            return "unreadable" if (self.out / "run.json").exists() else None

    def _write_owner(self) -> None:
        from .files import atomic_write_text

        atomic_write_text(self.out / OWNER, json.dumps({"config_hash": self.hash, "config": self.config}, indent=1))

    def move_aside(self) -> Path:
        """Move the old record into ``.replaced/<UTC time>/`` (renames: all or nothing per file)."""
        dest = self.out / REPLACED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest.mkdir(parents=True, exist_ok=True)
        for name in RECORD:
            if (self.out / name).exists():
                shutil.move(str(self.out / name), str(dest / name))
        return dest
