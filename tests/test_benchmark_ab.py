"""Smoke test of ``benchmarks/ab.py``: two trees side by side on the tiny workloads."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ab_runs_two_trees_and_writes_records(tmp_path):
    out = tmp_path / "ab.json"
    cases = ["W2:leapfrog:gradient", "W3:rk4:gn_matvec", "W1:verlet:forward", "W3:resnet:loss_gradient",
             "W3:verlet:classifier_newton"]
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "ab.py"), "--quick", "--rounds", "2", "--repeats", "1",
               "--tree", f"threaded={ROOT}", "--tree", f"unthreaded={ROOT}:unthreaded", "--json", str(out)]
    run = subprocess.run(command + [a for c in cases for a in ("--case", c)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    records = json.loads(out.read_text())
    assert [r["case"] for r in records] == cases
    for r in records:
        assert set(r["seconds"]) == {"threaded", "unthreaded"} and all(t > 0 for t in r["seconds"].values())
        assert r["trees"]["unthreaded"].endswith(":unthreaded")
    assert "unthreaded/threaded" in run.stdout


def test_ab_refuses_a_tree_without_ocdl(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "ab.py"), "--tree", f"a={tmp_path}",
               "--tree", f"b={ROOT}", "--case", "W1:resnet:forward"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "has no ocdl package" in run.stderr
