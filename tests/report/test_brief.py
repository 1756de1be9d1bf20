"""The brief view `run` and `attack` print: the story on one screen (issue 22: the demo printed
753 lines of 125 columns and no headline)."""

from __future__ import annotations

import io
import re

from advbench.read_model import Run
from advbench.report import render, report_of
from toys import many_attacks_run


def brief_of(defenses: int, attacks: int) -> str:
    run = Run.from_records(many_attacks_run(defenses, attacks), {f"d{d}__a{attacks}": [0.1, 0.2]
                                                                 for d in range(defenses)})
    out = io.StringIO()
    render(report_of(run, runs=["20261201-000000-abcdef"]), "table", out, "brief")
    return out.getvalue()


def test_the_brief_view_fits_one_screen_however_many_attacks():
    for attacks in (3, 12):
        text = brief_of(5, attacks)
        lines = text.splitlines()
        assert len(lines) <= 60 and max(len(line) for line in lines) <= 100, (attacks, len(lines))


def test_the_headline_names_each_defense_at_one_epsilon_strongest_first():
    text = brief_of(3, 3)
    headline = text.split("\n\n")[0].replace("\n    ", " ")  # the sentence, unwrapped
    assert headline.startswith("Linf eps 0.1, worst case over the attacks (set by): ")
    shares = [float(share) for share in re.findall(r" (\d+\.\d)% \(", headline)]
    assert shares == sorted(shares, reverse=True) and len(shares) == 3
    setters = re.findall(r"% \(([^)]+)\)", headline)  # each defense names what set its worst case
    assert len(setters) == 3 and all(setters)
    assert "advbench report 20261201-000000-abcdef" in text


def test_reject_option_defenses_get_their_detection_line_and_flags_say_what_to_do():
    text = brief_of(3, 3)
    assert all(f"Reject option: d{d} (r), Linf eps 0.1: detection AUC" in text for d in range(3))
    checks = text.split("what to do:\n", 1)[1].split("\n\n")[0]
    assert "unbounded-attack-incomplete: a3 on d0, d1, d2: " in checks.replace("\n    ", " ")


def test_the_setting_attack_is_the_one_whose_accuracy_is_the_worst_case():
    import pandas as pd

    from advbench.report.brief import setting_attack

    summary = pd.DataFrame({"defense": ["d"] * 3, "norm": ["linf"] * 3, "kind": ["fixed-epsilon"] * 3,
                            "epsilon": [0.1] * 3, "attack": ["pgd", "square", "fab"],
                            "robust_accuracy": [0.5, 0.4, 0.4]})
    assert setting_attack(summary, "d", "linf", 0.1, 0.4) == "square/fab"
    assert setting_attack(summary, "d", "linf", 0.1, 0.3) == "attacks combined"
