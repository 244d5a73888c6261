"""Tracking policies: how a frame's mask is chosen among the decoder's candidates, and which tracked frames
memory attention attends to. `meta`: Meta's rules (the default, SAM2VideoPredictor's); `samurai`: SAMURAI's
motion-aware choice and memory selection (Yang et al., 2024). One file each; the tracker calls a policy's
`select`, `recent_memories` and `evict`, and keeps what it needs per object in `ObjectState.policy_state`."""

from __future__ import annotations

from typing import Any

from engine.policies.meta import MetaPolicy

POLICIES = ("meta", "samurai")


def make_policy(name: str, rules: Any, settings: Any = None, image_size: int | None = None) -> Any:
    if name == "samurai":
        from engine.policies.samurai import SamuraiPolicy, SamuraiSettings

        return SamuraiPolicy(rules, settings or SamuraiSettings(), image_size or rules.image_size)
    return MetaPolicy(rules)


__all__ = ["POLICIES", "MetaPolicy", "make_policy"]
