"""The benchmark page's decisions (bench/targets.py): pure functions, no benchmark is run."""

from bench.targets import check_targets, render

INFO = {"date": "2026-01-02 10:00 UTC", "mode": "quick", "cpu": "cpu", "cores": 2,
        "ram_gb": 8.0, "python": "3.11", "gpu": None}


def overhead_row(result):
    rows = check_targets({"inter_trial_overhead": result})
    return next(r for r in rows if r["bench"] == "inter_trial_overhead")


def test_overhead_target_and_label_follow_the_device_the_run_used():
    cpu = overhead_row({"overhead_s_median": 0.4, "gpu": None})
    gpu = overhead_row({"overhead_s_median": 0.4, "gpu": "NVIDIA H100 80GB HBM3"})
    assert cpu["target"] == "<= 0.3" and not cpu["met"] and "on CPU" in cpu["label"]
    assert gpu["target"] == "<= 0.5" and gpu["met"] and "NVIDIA H100" in gpu["label"]


def test_each_result_shows_its_own_date_mode_and_size():
    results = {
        "parent_scale": {"trials": 500, "date": "2025-12-01 09:00 UTC", "mode": "full",
                         "command": "python bench/parent_scale.py --json", "seconds": 14.0},
        "data_pipeline": {"windows": 279200, "repeats": 2,
                          "command": "python bench/data_pipeline.py --json --quick"},
    }
    page = render(INFO, results, check_targets(results))
    assert "full run, 2025-12-01 09:00 UTC" in page  # an older full result keeps its stamp
    assert "quick run, 2026-01-02 10:00 UTC" in page  # one without a stamp is this run's
    assert "results of different runs" in page
    assert "279,200 windows (200 synthetic tickers x 1500 days); full runs use 1000 x 1750" \
        in page
    assert "1.6 million" not in page and "No GPU in this session" not in page


def test_gpu_results_name_the_gpu_in_their_heading():
    results = {"train_throughput": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3"}}
    page = render({**INFO, "gpu": "NVIDIA H100 80GB HBM3"}, results, check_targets(results))
    assert "### train_throughput on NVIDIA H100 80GB HBM3" in page


def test_results_of_different_machines_each_name_their_machine():
    results = {
        "parent_scale": {"trials": 500, "machine": "AMD EPYC, 2 cores, 23.5 GB RAM",
                         "command": "python bench/parent_scale.py --json"},
        "peers": {"trials": 10, "machine": "cpu, 2 cores, 8.0 GB RAM",
                  "command": "python bench/peers.py --json",
                  "peers": {"gpusweep": {"overhead_s": 0.1}, "Ray Tune": {"skipped": "x"}}},
    }
    page = render(INFO, results, check_targets(results))
    assert "- machine: per benchmark, below (results of different machines)" in page
    assert "2026-01-02 10:00 UTC, AMD EPYC, 2 cores, 23.5 GB RAM)" in page
    assert "| Ray Tune | - | x |" in page  # a skipped peer: no figures, the reason
    same = render(INFO, {"peers": results["peers"]}, [])
    assert "- machine: cpu, 2 cores, 8.0 GB RAM, Python 3.11" in same
    assert "| machine |" not in same  # a stamp, not a figure
