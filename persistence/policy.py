"""Save policies: when a save reaches the disk, and in what form.

``smart`` is the optimized profile (Redis's ``appendfsync always`` for critical saves, ``everysec``-like
batches for the rest, snapshots only at compaction). ``simple`` is the original bot's behaviour kept as
the rollback baseline: every save call rewrites the whole snapshot before it returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SavePolicy:
    """A named save policy; the store asks it two questions."""

    name: str
    commit_every_save: bool  # every save is written before it returns (else only critical ones)
    full_writes: bool  # a commit rewrites the whole snapshot (else appends to the journal)

    def commits_now(self, critical: bool) -> bool:
        """Must a save with this criticality be on disk before ``save`` returns?"""
        return critical or self.commit_every_save


SMART = SavePolicy(name="smart", commit_every_save=False, full_writes=False)
SIMPLE = SavePolicy(name="simple", commit_every_save=True, full_writes=True)
POLICIES: dict[str, SavePolicy] = {SMART.name: SMART, SIMPLE.name: SIMPLE}
# The ``profile.smart_persistence`` toggle's values and the policy each one selects.
POLICY_FOR_PROFILE: dict[str, str] = {"optimized": SMART.name, "baseline": SIMPLE.name}


def policy_named(name: str) -> SavePolicy:
    """The policy called ``name`` ("smart" or "simple"); ``ValueError`` otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown persistence policy {name!r}: expected one of {sorted(POLICIES)}") from None
