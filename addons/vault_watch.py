"""Keeps the decrypted vault in memory and reloads it within a fraction of a second of the
file changing, so a revoked or rotated key stops working without a restart.

A vault that cannot be read or decrypted leaves the holder in a failed state: every request
is then refused with 503 (fail closed), until a readable vault appears again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from codexgate.core.vault import Vault, VaultError, load_secret

log = logging.getLogger("codexgate.core.vault")


@dataclass(frozen=True)
class _FileStamp:
    mtime_ns: int
    ctime_ns: int  # an in-place edit that restores size and mtime still changes ctime
    size: int
    inode: int


def _stamp(path: Path) -> _FileStamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _FileStamp(st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class VaultHolder:
    """Shared by the addons that need the vault; configured by the identity addon."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.key_file: Path | None = None
        self.vault: Vault | None = None
        self.error: str | None = "no vault configured"
        self._stamp: _FileStamp | None = None
        self._task: asyncio.Task[None] | None = None

    def configure(self, path: Path, key_file: Path | None) -> None:
        self.path, self.key_file = path, key_file
        self._stamp = None
        self.load_now()

    def load_now(self) -> None:
        """Load synchronously (start-up, or from a worker thread)."""
        if self.path is None:
            return
        stamp = _stamp(self.path)
        try:
            secret = load_secret(self.key_file)
            vault = Vault.load(self.path, secret)
        except VaultError as exc:
            if self.error != str(exc):
                log.error("codexgate: vault unusable, refusing all requests with 503: %s", exc)
            self.vault, self.error = None, str(exc)
        except Exception as exc:  # corrupt content of any kind: fail closed, say why
            msg = f"vault {self.path} could not be loaded ({type(exc).__name__})"
            if self.error != msg:
                log.error("codexgate: %s; refusing all requests with 503", msg)
            self.vault, self.error = None, msg
        else:
            if self.error is not None and self.vault is None and self._stamp is not None:
                log.warning("codexgate: vault readable again, serving requests")
            self.vault, self.error = vault, None
            log.info("codexgate: vault loaded: %d keys, %d providers", len(vault.keys), len(vault.providers))
        self._stamp = stamp

    def start(self, interval: float) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(interval))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            stamp = _stamp(self.path) if self.path else None
            if self.path is not None and stamp != self._stamp:
                await asyncio.to_thread(self.load_now)
