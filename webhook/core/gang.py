"""Gang feasibility: can pods that must run at once be placed on the group's nodes — pure.

The question: ``nodes`` identical nodes, each with a capacity vector (cpu millicores,
memory bytes, cards); pod classes, each a demand vector with at least ``minimum`` and at
most ``count`` pods; at least ``total`` pods in all. Is there a placement of the gang on
the nodes at once? (Vector bin packing: NP-hard in general, small in practice: a few
roles, identical pods within a role.) :func:`place` answers exactly, in this order:

1. **Identical pods reduce to counting.** Classes with the same demand merge; pods with
   no demand fit anywhere. One class left: ``k = min_d floor(cap_d / demand_d)`` pods fit
   a node, so the gang fits iff ``need <= k * nodes``.
2. **Lower bounds** (a "no" is then certain): per resource, the volume of the pods that
   must run (the class minimums, plus the cheapest optional pods up to ``total``) must not
   exceed ``nodes * cap``.
3. **First-fit decreasing** (a "yes" is then certain): the mandatory pods and the
   smallest optional ones, largest first, each on the first node it fits.
4. **Exact search** when 2 and 3 disagree (first fit can fail where a placement exists):
   enumerate the maximal node configurations (how many pods of each class one node can
   hold together, no class can be added), then a Pareto frontier over nodes: after ``j``
   nodes, the set of maximal vectors of pods placed (capped at each class's count). The
   gang fits iff some vector after ``nodes`` nodes meets the minimums and the total.
   Restricting to maximal configurations loses nothing (any node's content extends to
   one; placing more than needed is harmless), and the frontier keeps exactly the
   undominated vectors, so this is exact. It stops early when the frontier stops
   changing. A work budget bounds it; beyond it the answer is ``None`` (undecided: the
   caller warns instead of denying).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BUDGET", "Placement", "PodClass", "place"]

BUDGET = 200_000
"""Work units (configurations x frontier vectors) the exact search may spend."""


@dataclass(frozen=True, slots=True)
class PodClass:
    """Identical pods: a name for messages, one pod's demand, how many must / may run."""

    name: str
    demand: tuple[int, ...]
    count: int
    minimum: int | None = None
    """At least this many must run (None: all ``count``)."""

    @property
    def need(self) -> int:
        return self.count if self.minimum is None else min(self.minimum, self.count)


@dataclass(frozen=True, slots=True)
class Placement:
    """The answer: ``fits`` True / False / None (undecided within the budget), and why."""

    fits: bool | None
    method: str
    """counting | bound | first-fit | exact | budget"""
    pods: int = 0
    """Pods that must run at once."""
    per_node: int = 0
    """For one class: pods of it one node holds."""
    dimension: int | None = None
    """For a volume bound: the index of the resource that runs out."""
    needed: int = 0
    """For a volume bound: that resource's total need."""


def _fit(demand: Sequence[int], room: Sequence[int]) -> int:
    """How many pods of ``demand`` fit in ``room`` (a large number when it asks nothing)."""
    best: int | None = None
    for need, cap in zip(demand, room, strict=True):
        if need > 0:
            k = cap // need
            best = k if best is None else min(best, k)
    return (1 << 62) if best is None else best


def place(
    classes: Sequence[PodClass],
    capacity: Sequence[int],
    nodes: int,
    total: int | None = None,
    budget: int = BUDGET,
) -> Placement:
    """Whether the gang can be placed at once; ``total``: pods that must run in all (None:
    the sum of the classes' needs). A class whose single pod does not fit a node and must
    run makes it a "no" (callers report that pod as its own violation first)."""
    merged: dict[tuple[int, ...], list[int]] = {}
    for c in classes:
        entry = merged.setdefault(tuple(c.demand), [0, 0])
        entry[0] += c.need
        entry[1] += c.count
    need_total = sum(c.need for c in classes) if total is None else total
    # Pods asking for nothing fit anywhere: they count, they take no room.
    free = merged.pop(tuple(0 for _ in capacity), [0, 0])
    need_total = max(0, need_total - free[1])
    demands = list(merged)
    mins = [merged[d][0] for d in demands]
    caps = [merged[d][1] for d in demands]
    need_total = max(need_total, sum(mins))
    pods = need_total + free[0]
    if need_total > sum(caps):
        return Placement(False, "counting", pods)  # asks more pods than it has
    if need_total == 0:
        return Placement(True, "counting", pods)
    alone = [_fit(d, capacity) for d in demands]
    for i, k in enumerate(alone):
        if k == 0:
            if mins[i] > 0:
                return Placement(False, "counting", pods, per_node=0)
            caps[i] = 0
    if need_total <= nodes:  # every pod fits a node alone: one per node
        return Placement(True, "counting", pods)
    if len(demands) == 1:
        k = alone[0]
        return Placement(need_total <= k * nodes, "counting", pods, per_node=k)

    bound = _volume_bound(demands, mins, caps, need_total, capacity, nodes)
    if bound is not None:
        return Placement(False, "bound", pods, dimension=bound[0], needed=bound[1])
    if _first_fit(demands, mins, caps, need_total, capacity, nodes):
        return Placement(True, "first-fit", pods)
    fits = _exact(demands, mins, caps, need_total, capacity, nodes, budget)
    return Placement(fits, "exact" if fits is not None else "budget", pods)


def _optional_sizes(demands: list[tuple[int, ...]], mins: list[int], caps: list[int]) -> list[int]:
    return [caps[i] - mins[i] for i in range(len(demands))]


def _volume_bound(
    demands: list[tuple[int, ...]],
    mins: list[int],
    caps: list[int],
    total: int,
    capacity: Sequence[int],
    nodes: int,
) -> tuple[int, int] | None:
    """(resource index, its need) when the pods that must run overflow all nodes in it."""
    extra = total - sum(mins)
    optional = _optional_sizes(demands, mins, caps)
    for dim, cap in enumerate(capacity):
        need = sum(d[dim] * m for d, m in zip(demands, mins, strict=True))
        left = extra
        for size, avail in sorted((d[dim], optional[i]) for i, d in enumerate(demands)):
            if left <= 0:
                break
            take = min(left, avail)
            need += take * size
            left -= take
        if need > cap * nodes:
            return dim, need
    return None


def _share(demand: Sequence[int], capacity: Sequence[int]) -> float:
    return max((n / c if c else float("inf")) for n, c in zip(demand, capacity, strict=True) if n)


def _first_fit(
    demands: list[tuple[int, ...]],
    mins: list[int],
    caps: list[int],
    total: int,
    capacity: Sequence[int],
    nodes: int,
) -> bool:
    """First-fit decreasing of the mandatory pods plus the smallest optional ones."""
    counts = list(mins)
    extra = total - sum(mins)
    for i in sorted(range(len(demands)), key=lambda i: _share(demands[i], capacity)):
        take = min(extra, caps[i] - mins[i])
        counts[i] += take
        extra -= take
    order = sorted(range(len(demands)), key=lambda i: _share(demands[i], capacity), reverse=True)
    rooms = [list(capacity) for _ in range(min(nodes, sum(counts)))]
    for i in order:
        d = demands[i]
        left = counts[i]
        for room in rooms:
            if left == 0:
                break
            k = min(left, _fit(d, room))
            if k:
                for dim in range(len(room)):
                    room[dim] -= k * d[dim]
                left -= k
        if left:
            return False
    return True


def _configurations(
    demands: list[tuple[int, ...]], caps: list[int], capacity: Sequence[int], budget: int
) -> list[tuple[int, ...]] | None:
    """Every maximal vector of pods one node holds (None past the budget)."""
    found: list[tuple[int, ...]] = []
    r = len(demands)
    spent = 0

    def fill(i: int, room: list[int], chosen: list[int]) -> bool:
        nonlocal spent
        spent += 1
        if spent > budget:
            return False
        if i == r:
            # Maximal: no class could take one more pod in what is left.
            if all(chosen[j] >= caps[j] or _fit(demands[j], room) == 0 for j in range(r)):
                found.append(tuple(chosen))
            return True
        most = min(caps[i], _fit(demands[i], room))
        for k in range(most, -1, -1):
            rest = [room[dim] - k * demands[i][dim] for dim in range(len(room))]
            chosen.append(k)
            ok = fill(i + 1, rest, chosen)
            chosen.pop()
            if not ok:
                return False
        return True

    if not fill(0, list(capacity), []):
        return None
    return found


def _exact(
    demands: list[tuple[int, ...]],
    mins: list[int],
    caps: list[int],
    total: int,
    capacity: Sequence[int],
    nodes: int,
    budget: int,
) -> bool | None:
    configs = _configurations(demands, caps, capacity, budget)
    if configs is None:
        return None
    spent = len(configs)
    r = len(demands)

    def done(v: tuple[int, ...]) -> bool:
        return all(v[i] >= mins[i] for i in range(r)) and sum(v) >= total

    frontier: set[tuple[int, ...]] = {tuple(0 for _ in range(r))}
    for _ in range(nodes):
        grown: set[tuple[int, ...]] = set()
        for v in frontier:
            for c in configs:
                grown.add(tuple(min(v[i] + c[i], caps[i]) for i in range(r)))
            spent += len(configs)
            if spent > budget:
                return None
        if any(done(v) for v in grown):
            return True
        pareto = _maximal(grown)
        spent += len(grown) * len(pareto)
        if pareto == frontier:
            return False  # more nodes add nothing: every class is capped or stuck
        frontier = pareto
    return False


def _maximal(vectors: set[tuple[int, ...]]) -> set[tuple[int, ...]]:
    """The undominated vectors (none is <= another componentwise)."""
    ordered = sorted(vectors, key=sum, reverse=True)
    kept: list[tuple[int, ...]] = []
    for v in ordered:
        if not any(all(a <= b for a, b in zip(v, k, strict=True)) for k in kept):
            kept.append(v)
    return set(kept)
