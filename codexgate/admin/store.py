"""Locked, atomic, audited vault edits — the one write path for the admin API and the CLI.

``VaultStore.edit(...)`` takes an exclusive ``flock`` on ``.<vault>.lock`` beside the vault (the
same lock file the CLI always used, so API and break-glass CLI edits serialise), loads the vault,
yields it, then appends exactly one audit entry (actor, role, action, target, before/after views of
the resources that changed — never secrets) and saves atomically. The entry is written *before* the
save (write-ahead): no change ever reaches the gateway without a record; a crash between the two
leaves a record of an edit that did not happen, which ``before``/``after`` make recognisable.
An exception inside the block leaves the vault and the audit log untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codexgate.admin.audit import AuditLog
from codexgate.admin.views import diff, snapshot
from codexgate.core.vault import Vault


@dataclass
class EditContext:
    """What an edit records; ``target`` may be set inside the block (e.g. a new key's id)."""

    actor: str
    role: str
    action: str
    target: str | None = None
    request_id: str | None = None
    source: str = "cli"
    entry: dict | None = None  # the audit entry, after the block


@dataclass
class VaultStore:
    path: Path
    secret: bytes
    audit: AuditLog

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def read(self) -> Vault:
        return Vault.load(self.path, self.secret)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if not self.path.is_file():
            Vault.load(self.path, self.secret)  # the one-line error; leaves no lock file behind
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def edit(self, ctx: EditContext) -> Iterator[Vault]:
        with self.locked():
            vault = Vault.load(self.path, self.secret)
            before = snapshot(vault)
            yield vault
            changed, old, new = diff(before, snapshot(vault))
            ctx.entry = self.audit.append(
                actor=ctx.actor,
                role=ctx.role,
                action=ctx.action,
                target=ctx.target or (", ".join(changed) if changed else "-"),
                before=old,
                after=new,
                request_id=ctx.request_id,
                source=ctx.source,
            )
            vault.save(self.path, self.secret)
