"""Issue 14: the researcher's workflow around the numbers (runs that grow, saved adversarials,
paper-ready tables, the field's conventions)."""

from __future__ import annotations

import json

import pytest
import torch

from advbench.run import local as local_executor
from advbench.store import list_runs
from helpers import invoke



def _grid(path, attacks: list[tuple[str, list[float]]], extra: str = "") -> str:
    body = "".join(f'[[attacks]]\nname = "{name}"\nepsilons = {eps}\n' for name, eps in attacks)
    path.write_text(f'samples = 30\nsanity = false\ndefenses = ["cnn"]\n{extra}\n' + body)
    return str(path)


@pytest.fixture
def cells_run(monkeypatch):
    """The cell ids `run_cell` is called for (the work a run really does)."""
    calls: list[str] = []
    original = local_executor.run_cell

    def counting(plan, *args, **kwargs):
        calls.append(plan.id)
        return original(plan, *args, **kwargs)

    monkeypatch.setattr(local_executor, "run_cell", counting)
    return calls


# ----------------------------------------------------------------------------- runs that grow

def test_adding_an_attack_runs_only_its_cells(isolated, cells_run):
    first = invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])]), "--format", "json")
    assert first.exit_code == 0, first.output
    assert cells_run == ["cnn__fgsm"]
    cells_run.clear()
    grown = invoke("run", _grid(isolated / "b.toml", [("fgsm", [0.1]), ("pgd-linf", [0.1])]), "--format", "json")
    assert grown.exit_code == 0, grown.output
    assert cells_run == ["cnn__pgd-linf"]  # fgsm came from the first run
    old, new = list_runs(isolated / "results")
    manifest = new.manifest()
    assert manifest.reused == {"cnn__fgsm": old.run_id}
    assert set(manifest.finished) == {"cnn__fgsm", "cnn__pgd-linf"}
    assert new.records().groupby("attack").size().to_dict() == {"fgsm": 30, "pgd-linf": 30}
    assert (new.record_path("cnn__fgsm").read_bytes() == old.record_path("cnn__fgsm").read_bytes())
    cells_run.clear()
    fresh = invoke("run", _grid(isolated / "b.toml", [("fgsm", [0.1]), ("pgd-linf", [0.1])]), "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert cells_run == ["cnn__fgsm", "cnn__pgd-linf"]


def test_changed_settings_or_samples_are_not_reused(isolated, cells_run):
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])])).exit_code == 0
    cells_run.clear()
    more_steps = isolated / "b.toml"
    _grid(more_steps, [("pgd-linf", [0.1])])
    more_steps.write_text(more_steps.read_text().replace("epsilons", "steps = 3\nepsilons"))
    assert invoke("run", more_steps).exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])]), "--samples", "31").exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])]), "--seed", "1").exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]


def test_a_damaged_earlier_cell_is_recomputed_not_copied(isolated, cells_run):
    assert invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])])).exit_code == 0
    (earlier,) = list_runs(isolated / "results")
    path = earlier.record_path("cnn__fgsm")
    path.write_text(path.read_text().replace(",1,", ",2,", 1))
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])])).exit_code == 0
    assert cells_run == ["cnn__fgsm"]
    assert list_runs(isolated / "results")[-1].manifest().reused == {}


# ----------------------------------------------------------------------------- saved adversarials, show

def _red_pixels(png) -> int:
    import matplotlib.image as mpimg

    image = mpimg.imread(png)[..., :3]
    return int(((image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)).sum())


def test_saved_adversarials_are_the_verified_ones_and_show_draws_them(isolated, digits, tiny_cnn):
    grid = _grid(isolated / "a.toml", [("pgd-linf", [0.05, 0.2])], "save_adversarials = true")
    assert invoke("run", grid).exit_code == 0
    (store,) = list_runs(isolated / "results")
    manifest = store.manifest()
    saved = store.read_adversarials("cnn__pgd-linf", manifest.adversarials["cnn__pgd-linf"])
    samples = saved["samples"]
    assert saved["adversarials"].shape == (2, 30, 1, 8, 8)
    assert torch.allclose(saved["epsilons"], torch.tensor([0.05, 0.2]))
    records = store.records()
    for i, eps in enumerate((0.05, 0.2)):
        adv = saved["adversarials"][i]
        assert (adv - digits.test_x[samples]).abs().amax() <= eps + 1e-5
        assert adv.min() >= 0 and adv.max() <= 1
        at = records[records["epsilon"] == eps].set_index("sample").loc[samples.tolist()]
        assert (tiny_cnn.predict(adv).labels.numpy() == at["adv_pred"].to_numpy()).all()
    out = isolated / "shown.png"
    result = invoke("show", "--eps", "0.2", "--count", "5", "--out", out)
    assert result.exit_code == 0, result.output
    import matplotlib.image as mpimg

    height, width = mpimg.imread(out).shape[:2]
    assert width > 1.5 * height  # five columns, three rows
    fooled_at_02 = (records[records["epsilon"] == 0.2].pipe(lambda r: (r["adv_pred"] != r["label"]).any()))
    assert fooled_at_02 and _red_pixels(out) > 0  # misclassified examples are marked in red
    assert invoke("show", "--eps", "0.3").exit_code == 2  # not run at 0.3: one-line error
    assert "not run at epsilon 0.3" in invoke("show", "--eps", "0.3").output


def test_show_without_saved_adversarials_says_how(isolated):
    assert invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])])).exit_code == 0
    result = invoke("show")
    assert result.exit_code == 2 and "--save-adversarials" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_gallery_draws_grey_and_colour_images(tmp_path, shape):
    import matplotlib.image as mpimg

    from advbench.report.gallery import Gallery, draw_gallery

    torch.manual_seed(0)
    clean = torch.rand(4, *shape) * 0.8
    adversarial = (clean + 0.1 * torch.sign(torch.randn_like(clean))).clamp(0, 1)
    shown = Gallery("c", "cnn", "pgd-linf", "Linf", 0.1, [0, 1, 2, 3], clean, adversarial, [1, 2, 3, 4],
                    [1, 2, 3, 4], [1, 7, 3, 9], [False, False, None, True])
    path = draw_gallery(shown, tmp_path / "g.png")
    image = mpimg.imread(path)[..., :3]
    assert image.shape[1] > image.shape[0]
    colourful = (image.max(-1) - image.min(-1)) > 0.3
    assert colourful.sum() > 0  # red titles at least
    area = image.shape[0] * image.shape[1]
    if shape[0] == 3:  # the images themselves are in colour
        assert colourful.sum() > 0.1 * area
    else:  # grey images: only the red titles of the fooled samples are coloured
        assert colourful.sum() < 0.01 * area


# ----------------------------------------------------------------------------- tables a paper can use

@pytest.fixture
def two_defense_run(isolated, trained_zoo):
    grid = isolated / "g.toml"
    grid.write_text('samples = 30\nsanity = false\ndefenses = ["cnn", "cnn+detect"]\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.05, 0.1]\n'
                    '[[attacks]]\nname = "autoattack"\nepsilons = [0.1]\nversion = "rand"\n')
    result = invoke("run", grid, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_latex_table_has_booktabs_rows_and_bold_best(two_defense_run):
    result = invoke("report", "--format", "latex")
    assert result.exit_code == 0, result.output
    tex = result.stdout
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "cnn+detect" in tex and "fgsm (Linf), $\\epsilon=0.05$" in tex and "ALL Linf, $\\epsilon=0.1$" in tex
    summary = {(r["defense"], r["attack"], r["epsilon"]): r for r in two_defense_run["summary"]}
    for row in tex.splitlines():
        if row.startswith("fgsm (Linf), $\\epsilon=0.1$"):
            values = [summary[(d, "fgsm", 0.1)]["robust_accuracy"] for d in ("cnn", "cnn+detect")]
            cells = row.split("&")[1:]
            best = max(values)
            for cell, value in zip(cells, values):
                assert f"{100 * value:.1f}" in cell
                assert ("\\textbf" in cell) == (value == best and values.count(best) == 1)


def test_latex_table_compiles(two_defense_run, tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    tex = invoke("report", "--format", "latex").stdout
    (tmp_path / "t.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex
                                    + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


def _parse_html(text: str):
    from html.parser import HTMLParser

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.sources, self.headings, self._in_h2 = [], [], [], False

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            attrs = dict(attrs)
            for key in ("src", "href"):
                if key in attrs:
                    self.sources.append(attrs[key])
            self._in_h2 = tag == "h2"

        def handle_data(self, data):
            if self._in_h2:
                self.headings.append(data)
                self._in_h2 = False

    parser = Collect()
    parser.feed(text)
    return parser


def test_html_report_is_one_self_contained_file(two_defense_run, tmp_path):
    result = invoke("report", "--format", "html")
    assert result.exit_code == 0, result.output
    page = _parse_html(result.stdout)
    assert page.tags.count("table") >= 4 and page.tags.count("img") >= 2
    assert page.sources and all(s.startswith("data:image/png;base64,") for s in page.sources)
    assert "http://" not in result.stdout and "https://" not in result.stdout and "<link" not in result.stdout
    assert any(h.startswith("Accuracy") for h in page.headings) and "Reject option" in page.headings


def test_html_report_renders_in_a_headless_browser(two_defense_run, tmp_path):
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser (chromium/chrome) installed")
    path = tmp_path / "report.html"
    path.write_text(invoke("report", "--format", "html").stdout)
    script = ("<script>document.title = document.querySelectorAll('table').length + ':' + "
              "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length;</script>")
    path.write_text(path.read_text().replace("</body>", script + "</body>"))
    done = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    tables, images = done.stdout.split("<title>")[1].split("</title>")[0].split(":")
    assert int(tables) >= 4 and int(images) >= 2


def test_robustbench_entries_carry_clean_and_autoattack_accuracy(two_defense_run):
    result = invoke("report", "--format", "robustbench")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)["entries"]
    summary = {(r["defense"], r["attack"]): r for r in two_defense_run["summary"] if r["attack"] == "autoattack"}
    assert {e["name"] for e in entries} == {"cnn", "cnn+detect"}
    for entry in entries:
        row = summary[(entry["name"], "autoattack")]
        assert entry["threat_model"] == "Linf" and entry["eps"] == "0.1" and entry["dataset"] == "digits"
        assert entry["autoattack_acc"] == f"{100 * row['robust_accuracy']:.2f}"
        assert entry["clean_acc"] == f"{100 * row['clean_accuracy']:.2f}" and entry["samples"] == 30
        assert entry["run_id"]


# ----------------------------------------------------------------------------- bring your own model

@pytest.mark.subprocess
def test_python_models_are_found_in_the_current_directory_by_the_installed_command(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "advbench"
    if not script.exists():
        pytest.skip("the advbench command is not installed next to this python")
    (tmp_path / "my_linear_net.py").write_text(
        "import torch\n\n"
        "class Normalised(torch.nn.Module):\n"
        "    \"\"\"Preprocessing inside the model: advbench feeds [0, 1] inputs.\"\"\"\n"
        "    def __init__(self, input_shape, num_classes):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.register_buffer('mean', torch.full((1, *input_shape), 0.3))\n"
        "        self.linear = torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)\n"
        "    def forward(self, x):\n"
        "        return self.linear(((x - self.mean) / 0.3).flatten(1))\n")
    done = subprocess.run([str(script), "attack", "python:my_linear_net:Normalised", "--attack", "fgsm", "--eps", "0.1",
                           "--samples", "10", "--no-sanity", "--format", "csv"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ,
                                                      "ADVBENCH_RESULTS": str(tmp_path / "results")})
    assert done.returncode == 0, done.stderr
    assert "python:my_linear_net:Normalised" in done.stdout


# ----------------------------------------------------------------------------- statistics

def test_paired_difference_interval_matches_the_wald_interval_on_many_samples():
    import numpy as np
    import pandas as pd

    from advbench.stats import paired_difference_interval

    rng = np.random.default_rng(0)
    a = pd.Series(rng.random(4000) < 0.7)
    b = pd.Series(np.where(rng.random(4000) < 0.8, a, rng.random(4000) < 0.5))
    difference, low, high = paired_difference_interval(a, b)
    n, only_a, only_b = len(a), int((a & ~b).sum()), int((~a & b).sum())
    wald = 1.959964 * np.sqrt((only_a + only_b) / n**2 - (only_a - only_b) ** 2 / n**3)
    assert difference == pytest.approx(a.mean() - b.mean())
    assert low == pytest.approx(difference - wald, abs=0.003) and high == pytest.approx(difference + wald, abs=0.003)
    same = paired_difference_interval(a[:50], a[:50])
    assert same[0] == 0 and same[1] < 0 < same[2]  # no difference, still an honest interval
    assert -1 <= paired_difference_interval(pd.Series([True] * 5), pd.Series([False] * 5))[1]


def test_holm_bonferroni_adjusts_within_each_row_of_the_comparison_table(isolated):
    """A row's family is its defense pairs: three defenses give three tests per row, adjusted
    together and apart from every other row (over the whole table nearly every p would read 1)."""
    from advbench.stats import holm_adjusted

    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    grid = isolated / "g.toml"
    grid.write_text('samples = 30\nsanity = false\ndefenses = ["cnn", "cnn+detect", "cnn+detect=0.2"]\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.05, 0.1]\n')
    table = json.loads(invoke("run", grid, "--format", "json").stdout)["mcnemar"]
    tested = [r for r in table if not r["note"]]
    rows = {(r["attack"], r["epsilon"]) for r in tested}
    assert len(rows) > 1
    for row in rows:
        family = [r for r in tested if (r["attack"], r["epsilon"]) == row]
        assert len(family) == 3
        assert [r["pvalue_holm"] for r in family] == pytest.approx(holm_adjusted([r["pvalue"] for r in family]))
    assert all(r["significant"] == (r["pvalue_holm"] < 0.01) for r in tested)
    assert all(r["difference_low"] <= r["difference"] <= r["difference_high"] for r in tested)
    text = invoke("report").stdout
    assert "Holm-Bonferroni within each row of 3 pairs" in text
    assert "Holm" not in invoke("report", "--no-holm").stdout.split("Paired comparison")[1].split("\n")[0]


def test_seed_ranges_expand_and_the_report_gives_their_spread(isolated, trained_zoo, digits, monkeypatch):
    import shutil

    from advbench import zoo
    from advbench.config import grid_from_dict

    spec = grid_from_dict({"defenses": ["cnn@0..2"], "attacks": ["fgsm"]})
    assert [d.spec for d in spec.defenses] == ["cnn@0", "cnn@1", "cnn@2"]
    table = grid_from_dict({"defenses": [{"name": "cnn+detect", "seeds": 2}], "attacks": ["fgsm"]})
    assert [d.spec for d in table.defenses] == ["cnn@0+detect", "cnn@1+detect"]
    own = isolated / "zoo"
    shutil.copytree(trained_zoo, own)
    monkeypatch.setenv("ADVBENCH_ZOO", str(own))
    zoo.train("cnn", digits, options={"epochs": 2}, seed=1, name="cnn-digits-seed1", zoo_dir=own)
    result = invoke("run", _grid(isolated / "s.toml", [("fgsm", [0.1])]), "--defense", "cnn@0..1",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    accuracy = {r["defense"]: r["robust_accuracy"] for r in document["summary"]}
    (row,) = [r for r in document["seeds"] if r["attack"] == "fgsm"]
    import statistics

    assert row["group"] == "cnn" and row["seeds"] == 2
    assert row["mean"] == pytest.approx(statistics.mean(accuracy.values()))
    assert row["sd"] == pytest.approx(statistics.stdev(accuracy.values()))


# ----------------------------------------------------------------------------- training that resumes

class _StopAfter:
    """An observer that interrupts training (as Ctrl-C does) when an epoch message appears."""

    def __init__(self, marker: str) -> None:
        from advbench.progress import Observer

        self.base, self.marker = Observer(), marker

    def message(self, text: str) -> None:
        if self.marker in text:
            raise KeyboardInterrupt

    def task(self, description, total, done_before=0):
        return self.base.task(description, total, done_before=done_before)


@pytest.mark.parametrize("defense, options, marker", [
    ("cnn", {"epochs": 3}, "epoch 2/3"),
    ("gat", {"epochs": 2, "steps": 2, "classifier_epochs": 2, "val_samples": 20}, "validation AUC"),  # after the classifier and one detector epoch
])
def test_interrupted_training_resumes_to_the_same_weights(tmp_path, digits, defense, options, marker):
    from advbench import zoo
    from advbench.defenses.base import state_digest

    whole = zoo.train(defense, digits, options=options, zoo_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        zoo.train(defense, digits, options=options, zoo_dir=tmp_path / "b", observer=_StopAfter(marker))
    assert not (tmp_path / "b" / f"{whole.name}.pt").exists()
    assert any((tmp_path / "b" / ".partial" / whole.name).iterdir())  # finished epochs were kept
    messages = []

    class Listen(_StopAfter):
        def message(self, text):
            messages.append(text)

    resumed = zoo.train(defense, digits, options=options, zoo_dir=tmp_path / "b", observer=Listen("-"))
    assert any("resuming after epoch" in m for m in messages)
    first, _ = zoo.load(whole.name, tmp_path / "a", info=digits.info)
    second, _ = zoo.load(resumed.name, tmp_path / "b", info=digits.info)
    assert state_digest(first) == state_digest(second)
    assert not (tmp_path / "b" / ".partial" / whole.name).exists()  # cleaned up once saved


# ----------------------------------------------------------------------------- conventions

def test_list_params_shows_real_defaults_not_placeholders():
    result = invoke("list", "--params")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    params = {lines[i].split()[0]: lines[i + 1] for i in range(len(lines) - 1)
              if lines[i].startswith("  ") and not lines[i].startswith("   ") and lines[i + 1].startswith("    ")}
    assert "--eps by input shape (8x8 0.1, 28x28 0.3, 32x32 0.03137)" in params["pgd-at"]
    import re

    for placeholder in ("--eps 0.0", "--epochs 0", "--noise-std -1.0", "--step-size 0.0", "--latent 0", "--upper 0.0"):
        pattern = re.compile(re.escape(placeholder) + r"(,|$)")
        assert not any(pattern.search(line) for line in params.values()), placeholder
    assert "cifar10 Linf 8/255 / L2 0.5" in result.output and "mnist Linf 0.3 / L2 2" in result.output


def test_dataset_epsilons_and_first_n_samples(tmp_path):
    from advbench.config import AttackSpec, DefenseSpec, Grid, default_epsilons, resolve_epsilons, subset_rule
    from advbench.norms import Norm

    assert default_epsilons("cifar10", Norm.LINF) == (8 / 255,) and default_epsilons("mnist", Norm.L2) == (2.0,)
    assert resolve_epsilons(AttackSpec("pgd-linf"), Norm.LINF, (0.0, 1.0), "svhn") == (8 / 255,)
    assert default_epsilons("digits", Norm.LINF) == (0.05, 0.1, 0.2, 0.3)
    grid = Grid((DefenseSpec("cnn"),), (AttackSpec("fgsm"),), dataset="mnist")
    assert subset_rule(grid) == "first" and subset_rule(Grid(grid.defenses, grid.attacks)) == "random"
    from advbench.data import load_dataset

    digits = load_dataset("digits")
    first, _, _ = digits.test_subset(5, seed=3, first=True)
    assert first.tolist() == [0, 1, 2, 3, 4]


def test_norms_print_as_linf_and_l2(two_defense_run):
    text = invoke("report").stdout
    assert "fgsm (Linf)" in text and "ALL Linf" in text and "(linf)" not in text


# ----------------------------------------------------------------------------- long work

def test_progress_moves_within_a_batch_and_estimates_say_how_long():
    import torch

    from advbench.attacks import make_attack
    from advbench.config import AttackSpec, CellPlan, DefenseSpec
    from advbench.run.estimate import BatchCredit, estimate_message

    steps: list[float] = []
    credit = BatchCredit(steps.append, size=100, evaluations_per_input=41)
    for _ in range(20):
        credit(100)  # one evaluation of the whole batch per attack step
    assert 0 < sum(steps) < 100 and sum(steps) == pytest.approx(20 * 100 / 41)
    for _ in range(100):
        credit(100)
    assert sum(steps) <= 95  # never the whole batch before the attack returns
    credit.finish()
    assert sum(steps) == pytest.approx(100)
    attack = make_attack("pgd-l2", {"steps": 80, "restarts": 5})
    plan = CellPlan(DefenseSpec("eabs"), AttackSpec("pgd-l2", (0.6,)), (0.6,))
    from advbench.run.plan import PlannedCell, cell_info

    cell = PlannedCell(plan, attack, cell_info(plan, attack))
    slow = estimate_message("eabs", 0.01, [cell], 200, torch.device("cpu"), eot=5)
    assert slow is not None and "eabs on cpu: up to" in slow and "--samples" in slow and "s per sample with pgd-l2" in slow
    assert estimate_message("cnn", 1e-5, [cell], 200, torch.device("cpu"), eot=1) is None


def test_plain_output_prints_progress_lines(capsys, monkeypatch):
    from advbench import progress

    clock = iter(range(0, 1000, 20))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    observer = progress.PlainObserver(interval=30)
    with observer.task("cnn x pgd", 200) as advance:
        for _ in range(4):
            advance(25.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("cnn x pgd: ") and "left" in line for line in lines)


def test_wide_plain_tables_fold_into_blocks_that_fit():
    import io

    from advbench.report.terminal import PLAIN_WIDTH, TextTable, write_tables

    header = ["", "eps", *[f"defense-{i} vs defense-{j}" for i in range(5) for j in range(i + 1, 5)]]
    rows = [["pgd-linf", "0.1", *["-25.0 [-30.5, -19.3] p=2.4e-11 *"] * 10], ["clean", "", *["+0.0"] * 10]]
    out = io.StringIO()
    write_tables([TextTable("Wide", header, rows, left_columns=2)], out)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= PLAIN_WIDTH
    assert sum(line.startswith("pgd-linf") for line in lines) > 1  # labels repeated in every block
    assert out.getvalue().count("p=2.4e-11 *") == 10  # nothing lost


def test_reuse_keeps_saved_adversarials_and_reruns_cells_without_them(isolated, cells_run):
    plain = _grid(isolated / "a.toml", [("fgsm", [0.1])])
    assert invoke("run", plain).exit_code == 0
    cells_run.clear()
    assert invoke("run", plain, "--save-adversarials").exit_code == 0
    assert cells_run == ["cnn__fgsm"]  # the earlier cell kept no inputs to show
    cells_run.clear()
    assert invoke("run", plain, "--save-adversarials").exit_code == 0
    assert cells_run == []
    latest = list_runs(isolated / "results")[-1].manifest()
    assert "cnn__fgsm" in latest.reused and "cnn__fgsm" in latest.adversarials
    assert invoke("show", "--out", isolated / "x.png").exit_code == 0
