"""Incremental validity: the greedy selections of a search space without re-checking from scratch.

Every selector in the project (H2SPG's redundant groups, random selections, architecture repair)
walks candidates in some order and accepts one only if `SearchSpace.is_valid(accepted + [g])`.
Re-running `is_valid` per candidate costs O(network) each time, O(groups x network) in all (a
minute on vit_b_16's 37,008 prune-mode groups). `GreedyValidity` keeps the state of the accepted
set instead and answers "is accepted + [g] still valid?" from it, with the same answer `is_valid`
would give:

- value covers: a count of not-yet-removed groups per cover. The accepted set is valid, so no
  cover is empty yet; g empties one exactly when g is the last group left in it. O(covers of g).
- segment rule (operator groups only): the reachability of `SegmentGraph.is_valid` on the removed
  segments plus g's. Operator groups are few (tens to hundreds), so this is recomputed per such
  candidate rather than maintained.
- concat rule (`SearchSpace._emptied_by_concats`): per (segment, channel groups) cover, how many of
  its channel groups are not yet sliced away. A channel candidate can only newly empty a cover it
  belongs to and whose producer is alive; an operator candidate changes which segments are alive
  and adds channels, so the whole (short) list is checked for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from asgnas_ir.errors import AsgnasError

if TYPE_CHECKING:
    from asgnas_ir.passes.analysis.search_space import SearchSpace


class GreedyValidity:
    """The state of a valid set of removed groups of `space`, grown one group at a time.

    `can_add(g)` equals `space.is_valid(removed + [g])`; `add(g)` records g as removed. Only groups
    that keep the set valid go in: every rule below counts on the current set being valid.
    """

    def __init__(self, space: SearchSpace, removed: Iterable[int] = ()) -> None:
        self.space = space
        self.removed: set[int] = set()
        self._n = len(space.groups)

        # value covers: the covers each group is in, and per cover how many of its groups are left
        covers = [set(c) for c in space.value_covers if c]
        self._left = [len(c) for c in covers]  # an id outside the space is never removed: it just stays
        self._covers_of: list[list[int]] = [[] for _ in range(self._n)]
        for index, cover in enumerate(covers):
            for gid in cover:
                if 0 <= gid < self._n:
                    self._covers_of[gid].append(index)

        # segment rule
        self._segments = space.segment_graph if space.group_segments else None
        self._removed_segments: set[int] = set()

        # concat rule. Channel ids are the dependency graph's, which in both mode are also the space
        # ids of the channel groups (`_emptied_by_concats` counts a chosen channel group as sliced away).
        seg_covers = [(seg, set(c)) for seg, c in space.segment_covers]
        # `build_search_space` gives every space with concat channels a segment graph; one built by hand
        # without it has no reachability to judge them by, and the rule is left out
        self._concat_rule = bool(space.concat_channels) and bool(seg_covers) and self._segments is not None
        self._both = space.mode == "both"
        self._taken_any = False  # an accepted operator group slices concat channels away
        self._channels: set[int] = set()  # channels sliced away so far
        positions = {s.id: i for i, s in enumerate(self._segments.segments)} if self._segments is not None else {}
        self._segment_count = len(positions)
        self._positions = positions
        # a value no segment produces (a graph input: segment -1) is never gone: the last slot
        self._cover_slot = np.array([positions.get(seg, len(positions)) for seg, _ in seg_covers], dtype=np.int64)
        self._cover_missing = np.array([len(c) for _, c in seg_covers], dtype=np.int64)
        by_channel: dict[int, list[int]] = {}
        for index, (_, cover) in enumerate(seg_covers):
            for ch in cover:
                by_channel.setdefault(ch, []).append(index)
        self._covers_of_channel = {ch: np.array(js, dtype=np.int64) for ch, js in by_channel.items()}
        self._gone = self._gone_mask(self._backward(set())) if self._concat_rule else np.zeros(1, dtype=bool)

        start = set(removed)
        if start:
            self._load(start)

    # public ----------------------------------------------------------------------------------------
    def can_add(self, gid: int) -> bool:
        """Is `removed + [gid]` a valid selection (what `space.is_valid` would say)?"""
        return self._check(gid) is not None

    def add(self, gid: int) -> None:
        """Record `gid` as removed; refuses one that would make the selection invalid."""
        state = self._check(gid)
        if state is None:
            reason = self.space.explain_invalid([*self.removed, gid])
            raise AsgnasError(f"group {gid} cannot be removed together with the groups already removed: {reason}")
        self._record(gid, state)

    def select(self, order: Iterable[int], k: int | None = None) -> list[int]:
        """Walk `order` and accept each group that keeps the selection valid, until `k` are accepted
        (no limit when None): `if is_valid(accepted + [g]): accepted.append(g)`, one state update per
        candidate. An id already removed is accepted again, as that loop would (the set is unchanged)."""
        accepted: list[int] = []
        for gid in order:
            if k is not None and len(accepted) >= k:
                break
            state = self._check(gid)
            if state is not None:
                self._record(gid, state)
                accepted.append(gid)
        return accepted

    # internals -------------------------------------------------------------------------------------
    def _load(self, start: set[int]) -> None:
        """Take in a whole valid set at once (a subset of it need not be valid: removing a segment can
        orphan another that removing it too makes fine again)."""
        space = self.space
        for gid in start:
            space.group(gid)  # the "does not exist" error for an unknown id
        if not space.is_valid(start):
            shown = f"{sorted(start)[:8]}{' ...' if len(start) > 8 else ''}"
            raise AsgnasError(
                f"the groups already removed ({shown}) are not a valid selection: {space.explain_invalid(start)}; "
                "start the greedy walk from a valid set (or from none)"
            )
        self.removed = set(start)
        for gid in start:
            for index in self._covers_of[gid]:
                self._left[index] -= 1
        self._removed_segments = {space.group_segments[g] for g in start if g in space.group_segments}
        if not self._concat_rule:
            return
        taken = {ch for g in start for ch in space.concat_channels.get(g, ())}
        self._taken_any = bool(taken)
        if self._both:
            taken |= {g for g in start if space.groups[g].kind == "channel"}
        self._gone = self._gone_mask(self._backward(self._removed_segments))
        for ch in taken:
            self._take_channel(ch)

    def _check(self, gid: int) -> tuple | None:
        """None when removing `gid` too is invalid, else what `_record` needs to take it in."""
        if not 0 <= gid < self._n:
            self.space.group(gid)  # raises the "does not exist" error
        if gid in self.removed:
            return ()
        left = self._left
        for index in self._covers_of[gid]:
            if left[index] == 1:  # gid is the last group of this cover
                return None
        segment = self.space.group_segments.get(gid)
        if segment is None:
            return self._channel_state(gid)
        return self._operator_state(gid, segment)

    def _channel_state(self, gid: int) -> tuple | None:
        """The concat rule for a group that removes no segment (the segment rule cannot change)."""
        if not (self._concat_rule and self._both) or gid in self._channels or self.space.groups[gid].kind != "channel":
            return (None, None, ())
        if self._taken_any:
            # the set is valid, so no live cover is empty yet: only one of gid's with gid as its last
            # channel can become so
            js = self._covers_of_channel.get(gid)
            if js is not None and np.any(~self._gone[self._cover_slot[js]] & (self._cover_missing[js] == 1)):
                return None
        return (None, None, (gid,))

    def _operator_state(self, gid: int, segment: int) -> tuple | None:
        """The segment and concat rules for an operator group: (segments removed, gone mask, channels
        newly sliced away) after taking it, or None when either rule breaks."""
        space = self.space
        segments_after = self._removed_segments | {segment}
        backward: set[int] | None = None
        if self._segments is not None:
            valid, backward = self._segments.removal_state(segments_after)
            if not valid:
                return None
        new = tuple(ch for ch in dict.fromkeys(space.concat_channels.get(gid, ())) if ch not in self._channels)
        if not self._concat_rule or backward is None:
            return (segments_after, None, new)
        gone = self._gone_mask(backward)
        if self._taken_any or space.concat_channels.get(gid):
            # more segments may be gone and more channels taken: check every cover (they are few)
            missing = self._cover_missing.copy()
            for ch in new:
                js = self._covers_of_channel.get(ch)
                if js is not None:
                    missing[js] -= 1
            if np.any(~gone[self._cover_slot] & (missing == 0)):
                return None
        return (segments_after, gone, new)

    def _backward(self, removed_segments: set[int]) -> set[int]:
        assert self._segments is not None
        return self._segments.surviving(removed_segments)[1]

    def _gone_mask(self, backward: set[int]) -> np.ndarray:
        """By segment position (plus a never-gone last slot): no longer reaching an output."""
        gone = np.ones(self._segment_count + 1, dtype=bool)
        gone[-1] = False
        gone[[self._positions[s] for s in backward if s in self._positions]] = False
        return gone

    def _take_channel(self, ch: int) -> None:
        self._channels.add(ch)
        js = self._covers_of_channel.get(ch)
        if js is not None:
            self._cover_missing[js] -= 1

    def _record(self, gid: int, state: tuple) -> None:
        if not state:  # already removed
            return
        self.removed.add(gid)
        for index in self._covers_of[gid]:
            self._left[index] -= 1
        segments_after, gone, new = state
        if segments_after is not None:
            self._removed_segments = segments_after
            if self.space.concat_channels.get(gid):
                self._taken_any = True
        if gone is not None:
            self._gone = gone
        for ch in new:
            self._take_channel(ch)
