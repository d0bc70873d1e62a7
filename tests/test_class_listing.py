"""The run's log lists the class names in output-index order (build.class_listing)."""

from __future__ import annotations

from litlab.build import class_listing


def test_names_are_listed_in_index_order_and_long_lists_are_cut():
    assert class_listing(["cat dog", "zebra", "猫"]) == "cat dog, zebra, 猫"
    names = [f"c{i}" for i in range(25)]
    assert class_listing(names) == ", ".join(names[:20]) + " and 5 more"


def test_names_that_are_their_own_indices_are_not_repeated():
    assert class_listing([str(i) for i in range(10)]) is None
    assert class_listing(["1", "0"]) == "1, 0"  # not the indices: the mapping is worth showing
