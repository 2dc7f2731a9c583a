"""Fault specs (``status=429;retry_after=2``) and the queue of faults waiting for requests."""

from __future__ import annotations

from dataclasses import dataclass, fields

_INT_KEYS = (
    "status",
    "delay_ms",
    "chunk_delay_ms",
    "reset_after_events",
    "stall_after_events",
    "stall_ms",
)
_STR_KEYS = ("retry_after", "error_event")


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec; the default instance is "no fault"."""

    status: int | None = None
    retry_after: str | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    reset_after_events: int | None = None
    stall_after_events: int | None = None
    stall_ms: int = 0
    error_event: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse ``key=value;key=value``; an unknown key or a bad number raises ``ValueError``."""
        values: dict[str, int | str] = {}
        for part in spec.split(";"):
            if not part.strip():
                continue
            key, sep, value = (x.strip() for x in part.partition("="))
            if not sep or not value:
                raise ValueError(f"fault spec part {part.strip()!r} is not key=value")
            if key in _INT_KEYS:
                number = int(value)
                if number < 0:
                    raise ValueError(f"fault {key} must not be negative")
                values[key] = number
            elif key in _STR_KEYS:
                values[key] = value
            else:
                known = ", ".join((*_INT_KEYS, *_STR_KEYS))
                raise ValueError(f"unknown fault key {key!r} (known: {known})")
        fault = cls(**values)  # type: ignore[arg-type]
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise ValueError("fault status must be an HTTP error status (400-599)")
        return fault

    @property
    def active(self) -> bool:
        return self != Fault()

    def describe(self) -> str:
        return ";".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name))


@dataclass
class QueuedFault:
    spec: str
    fault: Fault
    times: int
    match_path: str | None


class FaultQueue:
    """Faults for the next N requests whose path contains ``match_path`` (any path when None)."""

    def __init__(self) -> None:
        self._queue: list[QueuedFault] = []

    def add(self, spec: str, times: int = 1, match_path: str | None = None) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        if match_path is not None and not isinstance(match_path, str):
            raise ValueError("match_path must be a string or null")
        self._queue.append(QueuedFault(spec, Fault.parse(spec), times, match_path))

    def take(self, path: str) -> tuple[Fault, str] | None:
        for queued in self._queue:
            if queued.match_path is None or queued.match_path in path:
                queued.times -= 1
                if queued.times <= 0:
                    self._queue.remove(queued)
                return queued.fault, queued.spec
        return None

    def clear(self) -> None:
        self._queue.clear()

    def pending(self) -> list[dict[str, object]]:
        return [{"spec": q.spec, "times": q.times, "match_path": q.match_path} for q in self._queue]
