"""Table bounds of the ID ops for any dataset: sigrid_hash of string IDs and cross are bounded by
maxValue, time parts by their ranges (hour 24, weekday 7, day 32, age len(borders) + 1), to_int
leaves raw 64-bit IDs unbounded; a generating op leaves its inputs' bounds alone."""

from __future__ import annotations

from recprep.train.tables import DEFAULT_TABLE_ROWS, id_bounds, table_rows_for


def spec(*transforms, **source):
    return {"source": {"uri": "events.csv", "format": "csv", **source}, "transforms": list(transforms)}


ROLES = {"dense": ["price"], "sparse": ["user", "item", "cat"], "label": "clicked"}


def test_string_ids_crosses_and_time_parts_are_bounded():
    s = spec(
        {"op": "sigrid_hash", "columns": "sparse", "maxValue": 5000},
        {"op": "cross", "columns": ["user", "item"], "output": "user_item", "maxValue": 2_000_000, "salt": 3},
        {"op": "time", "columns": ["ts"], "part": "hour", "output": "ts_hour"},
        {"op": "time", "columns": ["ts"], "part": "weekday", "output": "ts_weekday"},
        {"op": "time", "columns": ["ts"], "part": "day", "output": "ts_day"},
        {
            "op": "time",
            "columns": ["ts"],
            "part": "age",
            "reference": "2017-12-04",
            "borders": [1, 2, 7],
            "output": "{column}_age",
        },
        **ROLES,
    )
    features = ["user", "item", "cat", "user_item", "ts_hour", "ts_weekday", "ts_day", "ts_age"]
    bounds = id_bounds(s, features)
    assert bounds == {
        "user": 5000,
        "item": 5000,
        "cat": 5000,
        "user_item": 2_000_000,  # not the inputs' 5000: the cross's own maxValue
        "ts_hour": 24,
        "ts_weekday": 7,
        "ts_day": 32,
        "ts_age": 4,
    }
    sized = table_rows_for(s, features)
    assert sized.rows == 2_000_000 and sized.note == "from the job: the ID range of user_item"


def test_a_cross_or_time_feature_does_not_change_its_inputs_bounds():
    s = spec(
        {"op": "to_int", "columns": ["user"]},
        {"op": "cross", "columns": ["user", "item"], "output": "ui", "maxValue": 10},
        {"op": "time", "columns": ["item"], "part": "hour", "output": "item_hour"},
        **ROLES,
    )
    # the features the trainer reads need not include the generated ones
    assert id_bounds(s, ["user", "item"]) == {"user": None, "item": None}
    assert id_bounds(s, ["ui"]) == {"ui": 10}


def test_to_int_ids_are_unbounded_until_hashed():
    s = spec({"op": "to_int", "columns": "sparse"}, **ROLES)
    sized = table_rows_for(s, ["user", "item"])
    assert sized.rows == DEFAULT_TABLE_ROWS and "user, item" in sized.note
    hashed = spec(
        {"op": "to_int", "columns": "sparse"}, {"op": "sigrid_hash", "columns": "user", "maxValue": 77}
    )
    assert id_bounds(hashed | {"source": s["source"]}, ["user", "item"]) == {"user": 77, "item": None}


def test_time_in_place_is_bounded_too():
    s = spec({"op": "time", "columns": "ts", "part": "weekday", "format": "%y%m%d%H"}, **ROLES)
    assert id_bounds(s, ["ts"]) == {"ts": 7}


def test_a_history_feature_has_its_inputs_bound_at_that_step():
    s = spec(
        {"op": "sigrid_hash", "columns": "sparse", "maxValue": 5000},
        {"op": "history", "columns": ["item", "cat"], "k": 10, "output": "{column}_history"},
        {"op": "sigrid_hash", "columns": ["cat"], "maxValue": 70},
        {"op": "history", "columns": ["cat"], "k": 3, "output": "recent_cat"},
        {"op": "to_int", "columns": ["user"]},
        {"op": "history", "columns": ["user"], "k": 3, "output": "{column}_h"},
        **ROLES,
    )
    features = ["user", "item", "cat", "item_history", "cat_history", "recent_cat", "user_h"]
    assert id_bounds(s, features) == {
        "user": None,
        "item": 5000,
        "cat": 70,
        "item_history": 5000,
        "cat_history": 5000,  # made before cat was hashed again
        "recent_cat": 70,
        "user_h": None,  # user is raw 64-bit IDs by then
    }
    # a history trained without its input: the input's bound all the same (it was None, so
    # ``recprep train --sparse cat_history`` took the default table size)
    assert id_bounds(s, ["cat_history", "recent_cat"]) == {"cat_history": 5000, "recent_cat": 70}
