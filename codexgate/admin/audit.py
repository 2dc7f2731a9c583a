"""The audit log: append-only JSONL segments forming a SHA-256 hash chain.

Layout: ``DIR/audit-000001.jsonl``, ``audit-000002.jsonl``, … (a new segment once the current one
exceeds ``segment_bytes``); DuckDB reads them with
``read_json('DIR/audit-*.jsonl', format = 'newline_delimited')``.

Each line is one JSON object (keys sorted) with ``seq`` (1, 2, … across segments), ``time``,
``actor``, ``role``, ``action``, ``target``, ``outcome`` (``ok`` | ``denied``), ``source``
(``api`` | ``cli`` | ``dashboard``), ``request_id``, ``before``/``after`` (public views only: ids and
fingerprints, never a secret), ``prev`` (the ``hash`` of the previous entry; 64 zeros for the
first) and ``hash`` = SHA-256 of the entry's canonical JSON without ``hash``.

Invariants: an entry is written with one ``os.write`` on an ``O_APPEND`` descriptor and fsynced,
under an exclusive ``flock`` on ``DIR/.audit.lock`` (so writers from the CLI and the API
serialise); ``verify`` names the first line whose own hash, sequence number or link to the
previous entry is wrong — an edited line fails its own hash, a removed, inserted or reordered
line breaks ``seq``/``prev`` at that position.

Head anchoring (optional): with an anchor file, every append also appends ``{seq, hash, time}``
of the new head there. ``verify`` with the anchor detects a truncated tail (the log ends before an
anchored ``seq``) and a rewritten history (an anchored ``seq`` with another hash). The anchor only
helps if it lives where whoever can write the log cannot (another host, an append-only store, the
gateway's log shipping); see docs/GOVERNANCE.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
log = logging.getLogger("codexgate.audit")
AUDIT_DIR_ENV = "CODEXGATE_AUDIT_DIR"
AUDIT_ANCHOR_ENV = "CODEXGATE_AUDIT_ANCHOR"
_SEGMENT = re.compile(r"^audit-(\d{6})\.jsonl$")
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024


class AuditError(Exception):
    """The audit log cannot be written or read. One line; never contains a secret."""


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's ``hash`` covers: its JSON without ``hash``, keys sorted, compact."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def default_audit_dir(vault_path: Path, env: Mapping[str, str] = os.environ) -> Path:
    """``$CODEXGATE_AUDIT_DIR``, else ``audit/`` beside the vault file."""
    value = env.get(AUDIT_DIR_ENV, "").strip()
    return Path(value) if value else Path(vault_path).parent / "audit"


def default_anchor(env: Mapping[str, str] = os.environ) -> Path | None:
    value = env.get(AUDIT_ANCHOR_ENV, "").strip()
    return Path(value) if value else None


def segments(directory: Path) -> list[Path]:
    """The segment files in chain order."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(directory).iterdir() if (m := _SEGMENT.match(p.name))]
    return [p for _, p in sorted(found)]


def _last_line(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = 8192
        pos, tail = size, b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if tail.rstrip(b"\n").count(b"\n") >= 1:
                break
    lines = tail.rstrip(b"\n").split(b"\n")
    return lines[-1] if lines else b""


@dataclass
class AuditLog:
    directory: Path
    anchor: Path | None = None
    segment_bytes: int = DEFAULT_SEGMENT_BYTES

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.anchor = Path(self.anchor) if self.anchor is not None else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / ".audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"audit log {self.directory} cannot be opened: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _head(self) -> tuple[Path, int, str]:
        """(segment to append to, seq of the last entry, its hash)."""
        segs = segments(self.directory)
        for seg in reversed(segs):
            if seg.stat().st_size == 0:
                continue
            raw = _last_line(seg)
            try:
                last = json.loads(raw)
                seq, head = int(last["seq"]), str(last["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditError(
                    f"audit log {seg} ends with an unreadable line; run `codexgate audit verify`"
                ) from None
            target = seg if seg.stat().st_size < self.segment_bytes else self._next_segment(segs)
            return target, seq, head
        return (segs[-1] if segs else self.directory / "audit-000001.jsonl"), 0, GENESIS

    def _next_segment(self, segs: list[Path]) -> Path:
        last = int(_SEGMENT.match(segs[-1].name).group(1)) if segs else 0  # type: ignore[union-attr]
        return self.directory / f"audit-{last + 1:06d}.jsonl"

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        request_id: str | None = None,
        outcome: str = "ok",
        source: str = "cli",
        detail: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Append one entry (and anchor the new head when an anchor file is configured)."""
        with self._locked():
            path, seq, prev = self._head()
            entry: dict[str, Any] = {
                "seq": seq + 1,
                "time": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
                "actor": actor,
                "role": role,
                "action": action,
                "target": target,
                "outcome": outcome,
                "source": source,
                "request_id": request_id,
                "detail": detail,
                "before": before,
                "after": after,
                "prev": prev,
            }
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            _append_synced(path, line.encode())
            if self.anchor is not None:
                self.write_anchor(entry["seq"], entry["hash"])
            # the head in the process log (``codexgate admin serve`` logs at INFO): shipped off the
            # host, the log itself becomes an anchor the log's writer cannot rewrite
            log.info(
                "audit head seq=%d hash=%s action=%s outcome=%s", entry["seq"], entry["hash"], action, outcome
            )
            return entry

    def write_anchor(self, seq: int, head: str) -> None:
        assert self.anchor is not None
        record = {"seq": seq, "hash": head, "time": datetime.now(UTC).isoformat()}
        _append_synced(self.anchor, (json.dumps(record, sort_keys=True) + "\n").encode())

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest entry (``(0, GENESIS)`` when empty)."""
        with self._locked():
            _, seq, head = self._head()
        return seq, head


def _append_synced(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AuditError(f"cannot append to {path}: {exc.strerror}") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- reading, verifying


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problem: str | None = None  # one line naming the first bad entry (file:line, seq)
    bad_file: str | None = None
    bad_line: int | None = None
    anchored_seq: int | None = None


def iter_lines(directory: Path) -> Iterator[tuple[Path, int, bytes]]:
    for seg in segments(directory):
        with seg.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                yield seg, number, raw


def verify(directory: Path, anchor: Path | None = None) -> VerifyResult:
    """Check the whole chain (and the anchored heads). Stops at the first bad entry."""
    expected_seq, prev = 1, GENESIS
    hashes: dict[int, str] = {}
    count = 0

    def bad(seg: Path, number: int, why: str) -> VerifyResult:
        return VerifyResult(
            False, count, expected_seq - 1, prev, f"{seg.name}:{number}: {why}", seg.name, number
        )

    for seg, number, raw in iter_lines(directory):
        if not raw.endswith(b"\n"):
            return bad(seg, number, "torn line (no newline): an interrupted or tampered write")
        try:
            entry = json.loads(raw)
            seq, own, link = entry["seq"], entry["hash"], entry["prev"]
        except (ValueError, KeyError, TypeError):
            return bad(seg, number, "not an audit entry (unreadable JSON or missing seq/hash/prev)")
        if not isinstance(entry, dict) or entry_hash(entry) != own:
            return bad(seg, number, f"entry seq {seq} was edited (its content does not match its hash)")
        if seq != expected_seq:
            what = (
                "an entry before it was removed, or lines were reordered"
                if seq > expected_seq
                else "it was inserted, duplicated or moved"
            )
            return bad(seg, number, f"expected seq {expected_seq}, found seq {seq}: {what}")
        if link != prev:
            return bad(
                seg, number, f"entry seq {seq} does not link to the previous entry (inserted or rewritten)"
            )
        hashes[seq] = own
        prev, expected_seq, count = own, expected_seq + 1, count + 1
    head_seq = expected_seq - 1
    result = VerifyResult(True, count, head_seq, prev)
    if anchor is not None:
        try:
            records = [json.loads(line) for line in Path(anchor).read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            return VerifyResult(False, count, head_seq, prev, f"anchor {anchor} cannot be read: {exc}")
        anchored = sorted((int(rec["seq"]), str(rec["hash"])) for rec in records)
        for seq, head in anchored:
            if seq <= head_seq and hashes.get(seq) != head:
                result.ok = False
                result.problem = f"entry seq {seq} differs from its anchored hash: history was rewritten"
                return result
        if anchored and anchored[-1][0] > head_seq:
            seq, missing = anchored[-1][0], anchored[-1][0] - head_seq
            result.ok = False
            result.problem = (
                f"the log ends at seq {head_seq} but the anchor recorded seq {seq}: "
                f"{missing} entr{'y' if missing == 1 else 'ies'} truncated from the tail"
            )
            return result
        result.anchored_seq = anchored[-1][0] if anchored else None
    return result


def read_entries(
    directory: Path,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Entries (oldest first) filtered by time, actor and action (``key.*`` globs allowed)."""
    from fnmatch import fnmatchcase

    out: list[dict[str, Any]] = []
    for _, _, raw in iter_lines(directory):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if since is not None and datetime.fromisoformat(entry["time"]) < since:
            continue
        if actor is not None and entry.get("actor") != actor:
            continue
        if action is not None and not fnmatchcase(str(entry.get("action")), action):
            continue
        out.append(entry)
    return out[-limit:] if limit else out
