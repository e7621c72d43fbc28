"""The loop estimate: printed once, after the first item, priced by cost; silent for short loops."""

import pytest

from course_utils import progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(items, cost=None, per_unit=10.0, quiet_below_s=progress.QUIET_BELOW_S):
    clock = FakeClock()
    seen = []
    for item in progress.estimated(items, "the sweep", cost=cost, clock=clock, quiet_below_s=quiet_below_s):
        seen.append(item)
        clock.now += per_unit * (cost(item) if cost else 1.0)  # the loop body's time
    return seen


def test_estimate_prices_the_whole_loop_from_the_first_item(capsys):
    assert run([1, 2, 3, 4]) == [1, 2, 3, 4]  # every item, in order
    out = capsys.readouterr().out
    assert out.count("the sweep: about") == 1  # printed once
    assert "about 40 s in all on cpu" in out and "the first of 4 took 10 s" in out


def test_estimate_weighs_items_by_cost(capsys):
    run([10, 20, 50, 100], cost=lambda nfe: nfe, per_unit=0.25)  # 2.5 s for the first, 45 s in all
    assert "about 45 s in all" in capsys.readouterr().out


def test_short_loops_and_single_items_print_nothing(capsys):
    run([1, 2, 3], per_unit=1.0)  # 3 s in all
    run([1], per_unit=100.0)  # nothing left to estimate
    assert capsys.readouterr().out == ""


def test_negative_costs_are_refused_before_the_loop_runs():
    with pytest.raises(ValueError, match="non-negative"):
        next(progress.estimated([1, 2], "x", cost=lambda i: -i))


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (600, "10 min"), (9000, "2.5 h")])
def test_span_reads_like_speech(seconds, text):
    assert progress.span(seconds) == text
