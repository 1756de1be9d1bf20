"""Figures fit their data: at most eight series a panel, legends outside the axes, single
epsilons as markers (issue 22: curves.png had 25 legend entries a panel, roc.png 38)."""

from __future__ import annotations


import pytest

import advbench.report.plots as plots
from advbench.read_model import Run
from advbench.report import report_of
from toys import many_attacks_run


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure `write_plots` draws, kept instead of only saved (drawn once for this module)."""
    figures = []
    saved = plots.save_figure

    def keep(fig, path):
        figures.append((path.name, fig))
        return saved(fig, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "save_figure", keep)
        patch.setattr(plots, "_save_and_close", lambda plt, fig, path: keep(fig, path))
        run = Run.from_records(many_attacks_run(), {f"d{d}__a8": [0.1] for d in range(9)})
        plots.write_plots(report_of(run), tmp_path_factory.mktemp("plots"), per_attack=False)
    return figures


def test_no_panel_holds_more_than_eight_series(drawn):
    assert {name for name, _ in drawn} == {"curves.png", "curves_by_defense.png", "roc.png", "reject.png"}
    for name, fig in drawn:
        for ax in fig.axes:
            if ax.get_visible():
                handles, _ = ax.get_legend_handles_labels()
                assert len(handles) <= plots.MAX_SERIES, (name, ax.get_title(), len(handles))


def test_legends_sit_outside_the_axes(drawn):
    for name, fig in drawn:
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1, name


def test_a_single_epsilon_attack_is_a_marker_not_a_line(drawn):
    (curves,) = [fig for name, fig in drawn if name == "curves_by_defense.png"]
    first = curves.axes[0]
    labels_of_lines = {line.get_label() for line in first.get_lines()}
    labels_of_markers = {c.get_label() for c in first.collections}
    assert {"a0", "a1"} <= labels_of_markers and not {"a0", "a1"} & labels_of_lines
    assert "a2" in labels_of_lines


def test_no_per_defense_detail_when_each_defense_faced_one_attack(tmp_path):
    """The detail figure would redraw curves.png line for line (and cost a second render)."""
    records = many_attacks_run(defenses=2)
    run = Run.from_records(records[records["attack"] == "a2"], {})
    written = plots.write_plots(report_of(run), tmp_path)
    names = [p.name for p in written]
    assert "curves.png" in names and "curves_by_defense.png" not in names
    assert plots.plot_attack_curves(report_of(Run.from_records(many_attacks_run(defenses=2), {})),
                                    tmp_path / "detail.png") is not None
