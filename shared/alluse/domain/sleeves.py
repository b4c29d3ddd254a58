"""The sleeves (sub-accounts) inside a main account (domain-spec A2)."""

from __future__ import annotations

from enum import StrEnum


class SleeveKind(StrEnum):
    GEN = "GEN"  # Gen-Acc: aggressive ATM short-put wheel, grows by forking
    REV = "REV"  # Rev-Acc: income-stable OTM wheel
    COM = "COM"  # Com-Acc: shares, LEAPS, covered calls; receives merges
    STARLAB = "STARLAB"  # capital granted to STAR-LAB instructions (0 by default)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    SleeveKind.GEN: "Gen-Acc",
    SleeveKind.REV: "Rev-Acc",
    SleeveKind.COM: "Com-Acc",
    SleeveKind.STARLAB: "STAR-LAB",
}

# Fixed order used for display and for deterministic tie-breaking when splitting cents.
SLEEVE_ORDER: tuple[SleeveKind, ...] = (SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM, SleeveKind.STARLAB)
