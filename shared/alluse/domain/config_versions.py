"""Versioned configuration overrides: every change is a new version with author, reason and time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GLOBAL_SCOPE = "GLOBAL"


@dataclass(frozen=True)
class ConfigVersion:
    scope: str  # GLOBAL_SCOPE or an account id
    version: int  # 1, 2, 3, ... per scope
    overrides: Mapping[str, Any]  # the scope's whole override layer after this change (JSON-able)
    changes: Mapping[str, Any]  # only what this version changed (JSON-able)
    author: str
    reason: str
    at: datetime
