"""Report views end to end: two defenses (McNemar), a reject-option defense, plots, curve command, combining runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from advbench import zoo
from advbench.cli import main
from advbench.store import list_runs
from helpers import invoke

DETECTOR_MODULE = '''
from toys import ConfidenceDetector

def make(zoo_dir):
    from advbench import zoo
    from advbench.data import load_dataset
    model, _ = zoo.load("cnn-digits", zoo_dir, info=load_dataset("digits").info)
    return ConfidenceDetector(model, threshold=-4.0)
'''


@pytest.fixture
def two_defense_grid(isolated, trained_zoo, digits):
    if not (trained_zoo / "cnn-seed1.pt").exists():
        zoo.train("cnn", digits, options={"epochs": 2}, seed=1, name="cnn-seed1", zoo_dir=trained_zoo)
    (isolated / "detmod.py").write_text(DETECTOR_MODULE.replace("make(zoo_dir)", "make()").replace(
        'zoo.load("cnn-digits", zoo_dir', f'zoo.load("cnn-digits", r"{trained_zoo}"'))
    grid = isolated / "grid.toml"
    grid.write_text(
        'samples = 60\nbatch_size = 30\n'
        'defenses = ["cnn", "cnn-seed1", { name = "python:detmod:make", label = "detector" }]\n'
        '[[attacks]]\nname = "fgsm"\nepsilons = [0.1, 0.2]\n'
        '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.1, 0.2]\nsteps = 5\n'
        '[[attacks]]\nname = "deepfool-l2"\nepsilons = [0.5, 1.0]\n'
    )
    return grid


def test_run_report_shows_comparisons_reject_metrics_and_writes_plots(two_defense_grid, isolated, monkeypatch):
    monkeypatch.syspath_prepend(str(isolated))
    result = invoke("run", str(two_defense_grid), "--view", "paper")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Paired comparison: accuracy a - b" in out and "cnn vs cnn-seed1" in out
    assert "ALL Linf" in out and "Reject option" in out and "detector" in out
    assert "±" in out
    (run_dir,) = (isolated / "results").iterdir()
    for name in ("summary.csv", "curves.csv", "mcnemar.csv", "reject.csv", "curves.png", "curves_by_defense.png",
                 "roc.png", "reject.png"):
        assert (run_dir / name).stat().st_size > 0, name
    import matplotlib.image

    image = matplotlib.image.imread(run_dir / "curves.png")
    assert image.shape[0] > 100 and image.shape[1] > 100

    plots = isolated / "plots"
    result = invoke("report", "--plots", str(plots), "--format", "markdown", "--alpha", "0.05")
    assert result.exit_code == 0 and "### Paired comparison" in result.stdout
    assert (plots / "roc.png").exists() and (plots / "mcnemar.csv").exists()
    assert not (plots / "detection.png").exists()  # per-attack panels only on request
    assert invoke("report", "--plots", str(plots), "--per-attack-plots").exit_code == 0
    assert (plots / "detection.png").stat().st_size > 0 and (plots / "reject_tradeoff.png").stat().st_size > 0
    data = json.loads(invoke("report", "--format", "json").stdout)
    assert {"summary", "curves", "mcnemar", "reject"} <= set(data)
    detector = [r for r in data["reject"] if r["defense"] == "detector"]
    assert detector
    from sklearn.metrics import roc_auc_score  # the AUC again, from the records, by another hand

    (store,) = list_runs(isolated / "results")
    records = store.records()
    checked = 0
    for row in detector:
        at = records[(records["defense"] == "detector") & (records["attack"] == row["attack"])
                     & (records["epsilon"] == row["epsilon"])]
        fooled = at[(at["clean_pred"] == at["label"]) & (at["adv_pred"] != at["label"])]
        if len(fooled):
            truth = [0] * len(at) + [1] * len(fooled)
            assert row["auc"] == pytest.approx(roc_auc_score(truth, [*at["clean_score"], *fooled["adv_score"]]))
            checked += 1
    assert checked

    result = invoke("curve", "--out", str(isolated / "c"))
    assert result.exit_code == 0 and "eps at 50%" in result.stdout
    assert (isolated / "c" / "curves.png").stat().st_size > 0

    summary = invoke("report", "--view", "summary")
    assert summary.exit_code == 0 and "robust acc" in summary.stdout
    pages = list((isolated / "results").glob("*/report.html"))  # every table and figure beside the records
    assert pages and "<img" in pages[0].read_text()
    full, brief = invoke("report", "--view", "brief", "--full"), invoke("report", "--view", "paper")
    assert full.exit_code == 0 and full.stdout == brief.stdout  # --full is every table, whatever the view


def test_combining_runs_on_same_and_different_samples(isolated):
    base = ['--attack', 'fgsm', '--eps', '0.1', '--format', 'csv']
    assert invoke("attack", "cnn", *base, "--samples", "30").exit_code == 0
    assert invoke("attack", "cnn", "--attack", "pgd-linf", "--eps", "0.1", "--steps", "3",
                  "--samples", "30", "--format", "csv").exit_code == 0
    assert invoke("attack", "cnn", *base, "--samples", "40").exit_code == 0
    runs = [run.run_id for run in list_runs(isolated / "results")]  # in creation order
    combined = invoke("report", runs[0], runs[1], "--format", "csv")
    assert combined.exit_code == 0, combined.output
    assert "fgsm" in combined.stdout and "pgd-linf" in combined.stdout and "ALL Linf" in combined.stdout
    refused = invoke("report", runs[0], runs[2])
    assert refused.exit_code != 0 and "other samples" in refused.output
    duplicate = invoke("report", runs[0], runs[0])
    assert duplicate.exit_code != 0 and "named more than once" in duplicate.output
    assert invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.2", "--samples", "30").exit_code == 0
    newest = list_runs(isolated / "results")[-1].run_id
    clash = invoke("report", runs[0], newest)
    assert clash.exit_code != 0 and "cnn x fgsm appears in more than one run" in clash.output


def test_bad_report_options(isolated):
    assert invoke("attack", "cnn", "--attack", "fgsm", "--samples", "10", "--format", "csv").exit_code == 0
    result = invoke("report", "--alpha", "2")
    assert result.exit_code != 0 and "alpha must be between 0 and 1" in result.output


def test_runs_lists_each_run_with_its_status(isolated):

    from advbench.store import list_runs

    runner = CliRunner()
    assert "no runs in" in runner.invoke(main, ["runs"]).output
    done = runner.invoke(main, ["attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10", "--no-sanity"])
    assert done.exit_code == 0, done.output
    partial = runner.invoke(main, ["attack", "cnn", "--attack", "mim", "--attack", "fgsm", "--eps", "0.1",
                                   "--samples", "12", "--no-sanity"])
    assert partial.exit_code == 0, partial.output
    first, second = list_runs(isolated / "results")
    manifest = second.manifest()
    manifest.finished.pop(manifest.cells[0].id)  # as if interrupted after one cell
    second.write_manifest(manifest)
    listed = runner.invoke(main, ["runs"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines() if line.startswith("2")}
    assert lines[first.run_id].rstrip().endswith("complete")
    assert lines[second.run_id].rstrip().endswith("1 of 2 cells")


def test_a_report_without_flags_says_so(isolated):


    result = invoke(*["attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10",
                                       "--no-sanity"])
    assert result.exit_code == 0, result.output
    assert "no flags" in result.output


def test_a_report_raises_no_pandas_warning(isolated):
    import warnings

    from helpers import invoke as run_cli

    (isolated / "grid.toml").write_text('samples = 10\ndefenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\n'
                                        'epsilons = [0.1]\n')
    assert run_cli("run", isolated / "grid.toml", "--format", "csv").exit_code == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("report").exit_code == 0
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]


def test_an_incomplete_run_says_so_in_every_format(isolated):
    import io
    import json

    import pandas as pd

    from helpers import invoke as run_cli

    (isolated / "broken.py").write_text("def net():\n    raise ValueError('not today')\n")
    (isolated / "grid.toml").write_text('samples = 10\nsanity = false\ndefenses = ["cnn", "python:broken:net"]\n'
                                        '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    assert run_cli("run", isolated / "grid.toml", "--format", "csv").exit_code != 0  # one defense refused
    outputs = {fmt: run_cli("report", "--format", fmt).stdout for fmt in ("csv", "latex", "robustbench", "html")}
    assert outputs["csv"].startswith("# INCOMPLETE run ")
    assert list(pd.read_csv(io.StringIO(outputs["csv"]), comment="#")["defense"]) == ["cnn"]
    assert r"\textbf{INCOMPLETE run" in outputs["latex"]
    assert json.loads(outputs["robustbench"])["notices"][0].startswith("INCOMPLETE run ")
    assert "INCOMPLETE run " in outputs["html"]
