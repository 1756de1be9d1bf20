"""The run contract's typed values survive the round trip through JSON, old shapes included."""

from __future__ import annotations

from advbench.contract import Timings


def test_timings_keep_their_three_kinds_apart_through_json():
    timings = Timings(training=12.5, clean={"cnn": 0.4}, cells={"cnn__fgsm": 1.5})
    again = Timings.from_json(timings.to_json())
    assert again == timings
    assert again.phases() == {"training": 12.5, "clean cnn": 0.4, "cnn__fgsm": 1.5}


def test_timings_of_runs_written_before_the_typed_shape_are_read():
    old = {"training": 3.0, "clean cnn@1": 0.2, "cnn@1__pgd-linf": 4.0}
    assert Timings.from_json(old) == Timings(3.0, {"cnn@1": 0.2}, {"cnn@1__pgd-linf": 4.0})
    assert Timings.from_json({}) == Timings()
