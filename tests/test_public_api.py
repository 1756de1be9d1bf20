"""The names a notebook user imports from `advbench` are the functions and classes the README shows."""

from __future__ import annotations


def test_evaluate_is_the_function_even_after_its_module_was_imported():
    import advbench
    import advbench.evaluation  # noqa: F401 - what every CLI command imports first
    import advbench.settings  # noqa: F401

    from advbench import Paths, ReportOptions, RunOptions, evaluate, prepare

    assert callable(evaluate) and evaluate.__module__ == "advbench.evaluation"
    assert callable(advbench.evaluate) and prepare.__name__ == "prepare"
    assert RunOptions().resume is False and ReportOptions().alpha == 0.01 and Paths().zoo_dir is None


def test_benchmark_is_the_notebook_call():
    import advbench

    assert advbench.benchmark.__module__ == "advbench.notebook" and "benchmark" in advbench.__all__
