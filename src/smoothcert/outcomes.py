"""What a smoothed classifier answers when it cannot decide: ``ABSTAIN`` (= -1, never a class).

Certifiers return it, records store it in their ``predict`` columns, metrics and attacks count it;
it lives below all of them so that none reaches up to a certifier for the value."""

from __future__ import annotations

__all__ = ["ABSTAIN"]

ABSTAIN = -1
