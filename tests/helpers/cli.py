"""The ``codexgate`` console script run as a real subprocess against a scratch vault."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from codexgate.core.vault import Vault, load_secret

REPO = Path(__file__).resolve().parents[2]
CODEXGATE = str(REPO / ".venv" / "bin" / "codexgate")


class Cli:
    """``cli("limits", "show")`` runs ``codexgate limits show`` with this folder's vault (and
    ledger) in the environment; ``ok=True`` asserts exit 0."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = root / "data" / "vault" / "vault.enc"
        self.key_file = root / "secrets" / "vault.key"
        self.ledger = root / "data" / "ledger" / "ledger.sqlite3"

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
        env.update(CODEXGATE_VAULT=str(self.vault), CODEXGATE_VAULT_KEY_FILE=str(self.key_file),
                   CODEXGATE_LEDGER=str(self.ledger))  # fmt: skip
        r = subprocess.run([CODEXGATE, *args], cwd=self.root, env=env, capture_output=True, text=True, timeout=60)
        if ok:
            assert r.returncode == 0, r.stdout + r.stderr
        return r

    def load(self) -> Vault:
        return Vault.load(self.vault, load_secret(self.key_file))


def one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The command failed with exactly one ``codexgate: error: …`` line containing ``fragments``."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codexgate: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
