"""webhook.core.gang: exact gang placement, proved against brute force on small cases."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.gang import PodClass, place


def brute_force(
    classes: list[PodClass], capacity: tuple[int, ...], nodes: int, total: int | None
) -> bool:
    """Every choice of pods and every assignment of them to nodes (tiny cases only)."""
    need_total = sum(c.need for c in classes) if total is None else total
    choices = [range(c.need, c.count + 1) for c in classes]
    for counts in itertools.product(*choices):
        if sum(counts) < need_total:
            continue
        pods = [c.demand for c, k in zip(classes, counts, strict=True) for _ in range(k)]
        for assignment in itertools.product(range(nodes), repeat=len(pods)):
            rooms = [list(capacity) for _ in range(nodes)]
            ok = True
            for demand, node in zip(pods, assignment, strict=True):
                for d, need in enumerate(demand):
                    rooms[node][d] -= need
                    ok = ok and rooms[node][d] >= 0
            if ok:
                return True
    return False


def test_identical_pods_reduce_to_counting() -> None:
    worker = PodClass("replica Worker", (4000, 0, 4), 5)
    result = place([worker], (64000, 1 << 40, 8), 2)
    assert (result.fits, result.method, result.per_node) == (False, "counting", 2)
    assert place([worker], (64000, 1 << 40, 8), 3).fits is True


def test_identical_roles_merge_before_counting() -> None:
    a = PodClass("replicated job a", (1000, 0, 2), 3)
    b = PodClass("replicated job b", (1000, 0, 2), 2)
    assert place([a, b], (8000, 0, 4), 2).method == "counting"
    assert place([a, b], (8000, 0, 4), 2).fits is False  # 5 pods, 2 per node, 2 nodes
    assert place([a, b], (8000, 0, 4), 3).fits is True


def test_pods_that_ask_nothing_fit_anywhere() -> None:
    launcher = PodClass("replica Launcher", (0, 0, 0), 1)
    worker = PodClass("replica Worker", (0, 0, 8), 2)
    assert place([launcher, worker], (1, 1, 8), 2).fits is True
    assert place([launcher, worker], (1, 1, 8), 1).fits is False


def test_first_fit_decreasing_fails_where_an_exact_placement_exists() -> None:
    """Capacity 10, pods 5 4 3 3 3 2 on 2 nodes: FFD puts 5+4 together and strands the 2;
    {5,3,2} + {4,3,3} fits exactly."""
    classes = [
        PodClass("a", (5,), 1),
        PodClass("b", (4,), 1),
        PodClass("c", (3,), 3),
        PodClass("d", (2,), 1),
    ]
    result = place(classes, (10,), 2)
    assert (result.fits, result.method) == (True, "exact")
    assert brute_force(classes, (10,), 2, None)


def test_two_resources_where_first_fit_is_wrong() -> None:
    """Node (8 cpu, 8 GiB); pods (4, 3) x2, (2, 4) x2, (1, 1) x2 on 2 nodes. First fit puts
    both (4, 3) on one node and both (2, 4) on the other: no room for a (1, 1). One of each
    per node is (7, 8): it fits."""
    classes = [
        PodClass("replica Worker", (4, 3), 2),
        PodClass("replica PS", (2, 4), 2),
        PodClass("replica Chief", (1, 1), 2),
    ]
    result = place(classes, (8, 8), 2)
    assert (result.fits, result.method) == (True, "exact")
    assert brute_force(classes, (8, 8), 2, None)


def test_volume_bound_names_the_resource() -> None:
    classes = [PodClass("master", (1000, 0, 1), 1), PodClass("worker", (1000, 0, 4), 2)]
    result = place(classes, (64000, 1 << 40, 8), 1)
    assert (result.fits, result.method, result.dimension, result.needed) == (False, "bound", 2, 9)


def test_exact_no_beyond_the_volume_bound() -> None:
    """Three pods of 6 on two nodes of 10: volume 18 <= 20, but no two share a node."""
    classes = [PodClass("a", (6,), 2), PodClass("b", (7,), 1)]
    result = place(classes, (10,), 2)
    assert (result.fits, result.method) == (False, "exact")


def test_minimum_picks_the_cheapest_pods() -> None:
    """minAvailable 3 of 1 big + 4 small: the three small ones fit one node."""
    classes = [PodClass("big", (8,), 1, minimum=0), PodClass("small", (3,), 4, minimum=0)]
    assert place(classes, (10,), 1, total=3).fits is True
    assert place(classes, (10,), 1, total=4).fits is False


def test_asking_more_pods_than_there_are_never_fits() -> None:
    assert place([PodClass("w", (1,), 2, minimum=0)], (10,), 5, total=3).fits is False


def test_budget_exhausted_is_undecided() -> None:
    classes = [PodClass(str(i), (i + 3, 11 - i), 3) for i in range(6)]
    result = place(classes, (24, 24), 5, budget=10)
    assert result.fits is None or result.method in ("first-fit", "bound")


def test_a_pod_that_fits_no_node_never_fits() -> None:
    assert place([PodClass("a", (11,), 1), PodClass("b", (1,), 1)], (10,), 3).fits is False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.tuples(st.integers(0, 6), st.integers(0, 6)),
            st.integers(0, 3),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
        min_size=1,
        max_size=3,
    ),
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(0, 6)),
)
def test_agrees_with_brute_force(
    raw: list[tuple[tuple[int, int], int, int | None]], nodes: int, total: int | None
) -> None:
    classes = [PodClass(str(i), d, n, m) for i, (d, n, m) in enumerate(raw)]
    if sum(c.count for c in classes) > 7:
        return  # brute force is exponential
    capacity = (6, 6)
    result = place(classes, capacity, nodes, total)
    assert result.fits == brute_force(classes, capacity, nodes, total), result


@pytest.mark.parametrize("nodes", [1, 4, 64])
def test_many_nodes_stop_when_the_frontier_stops_growing(nodes: int) -> None:
    classes = [PodClass("a", (6, 1), 2), PodClass("b", (7, 1), 1), PodClass("c", (1, 9), 1)]
    expected = nodes >= 3
    assert place(classes, (10, 10), nodes).fits is expected
