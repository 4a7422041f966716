"""Field-level changes between a recorded and a re-run body."""

from __future__ import annotations

from jetmesh.replay.diff import field_changes


def test_nested_fields_lists_and_absent_keys() -> None:
    before = {"total": 6, "items": [{"qty": 2}, {"qty": 1}], "note": "x"}
    after = {"total": 6, "items": [{"qty": 3}], "extra": True}
    assert field_changes(before, after) == [
        "extra: (absent) -> true",
        "items[0].qty: 2 -> 3",
        'items[1]: {"qty": 1} -> (absent)',
        'note: "x" -> (absent)',
    ]


def test_equal_values_have_no_changes_and_a_type_change_is_one() -> None:
    assert field_changes({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}) == []
    assert field_changes({"a": 1}, {"a": "1"}) == ['a: 1 -> "1"']
    assert field_changes(1, True) == ["(the value): 1 -> true"]


def test_many_changes_are_cut_with_a_count() -> None:
    changes = field_changes({f"k{n:02}": n for n in range(30)}, {}, limit=5)
    assert len(changes) == 6
    assert changes[-1] == "... and 25 more"
