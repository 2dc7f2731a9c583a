"""The answer summary of a model call, for the gateway's addons: defined in ``codexgate.wire``
(one module per API); this module keeps the names the addons import."""

from __future__ import annotations

from codexgate.core.usage import Usage
from codexgate.wire import Reassembled, from_json_body

__all__ = ["Reassembled", "Usage", "from_json_body"]
