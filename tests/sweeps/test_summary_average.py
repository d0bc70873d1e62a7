"""``litlab.summarize DIR --average-over seed``: jobs that differ only in the seed as one row with
each metric's mean ± sample std over the jobs that completed with it (job folders written by hand)."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from litlab.errors import LitlabError
from litlab.summarize import main, summarize

# val/acc of each (lr, seed); test/acc is val/acc - 0.02 * seed, so the two means rank differently per seed
VAL_ACC = {("0.001", "1"): 0.81, ("0.001", "2"): 0.86, ("0.001", "3"): 0.79,
           ("0.003", "1"): 0.90, ("0.003", "2"): 0.84, ("0.003", "3"): 0.88,
           ("0.01", "1"): 0.70, ("0.01", "2"): 0.95, ("0.01", "3"): 0.75}


def _job(sweep, name, overrides, metrics):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "metrics.json").write_text(json.dumps({"optimized_metric": "val/acc", **metrics}))


def _test_acc(lr, seed):
    return VAL_ACC[lr, seed] - 0.02 * int(seed)


@pytest.fixture
def seeds(tmp_path):
    """A grid of 3 learning rates x 3 seeds, every job completed."""
    s = tmp_path / "seeds"
    for i, (lr, seed) in enumerate(VAL_ACC):
        _job(s, str(i), [f"model.optimizer.lr={lr}", f"seed={seed}"],
             {"status": "completed", "val/acc": VAL_ACC[lr, seed], "test/acc": _test_acc(lr, seed)})
    return s


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_hold_the_mean_std_and_n_of_each_setting_ranked_by_the_mean(seeds, capsys):
    averaged = summarize(seeds, average_over="seed")["averaged"]
    expected = {}
    for lr in ("0.001", "0.003", "0.01"):
        val = [VAL_ACC[lr, s] for s in "123"]
        test = [_test_acc(lr, s) for s in "123"]
        expected[lr] = (statistics.mean(val), statistics.stdev(val), statistics.mean(test), statistics.stdev(test))
    best_first = sorted(expected, key=lambda lr: expected[lr][0], reverse=True)
    rows = averaged["rows"]
    assert [(r["rank"], r["model.optimizer.lr"]) for r in rows] == list(enumerate(best_first, 1))
    for row in rows:
        mean, std, test_mean, test_std = expected[row["model.optimizer.lr"]]
        assert row["val/acc mean"] == pytest.approx(mean) and row["val/acc std"] == pytest.approx(std)
        assert row["test/acc mean"] == pytest.approx(test_mean) and row["test/acc std"] == pytest.approx(test_std)
        assert (row["n"], row["val/acc n"], row["test/acc n"], row["status"]) == (3, 3, 3, "3 completed")
        assert "seed" not in row
    # summary.csv holds the groups as numbers, summary_jobs.csv the jobs one by one
    written = _csv(seeds / "summary.csv")
    assert [r["model.optimizer.lr"] for r in written] == best_first
    assert float(written[0]["val/acc std"]) == pytest.approx(expected[best_first[0]][1])
    assert len(_csv(seeds / "summary_jobs.csv")) == len(VAL_ACC)
    # the tables a reader sees name the mean: no column reads as one job's val/acc
    md = (seeds / "summary.md").read_text()
    assert md.startswith(f"# Sweep seeds: 3 groups of {len(VAL_ACC)} jobs averaged over seed, ranked by mean val/acc")
    best = expected[best_first[0]]
    assert (f"| 1 | {best_first[0]} | " in md
            and f"| 3 completed | {best[0]:.4g} ± {best[1]:.2g} (3) | {best[2]:.4g} ± {best[3]:.2g} (3) |" in md)
    assert "## Each job of sweep seeds:" in md  # the per-job table below
    main([str(seeds), "--average-over", "seed"])
    printed = capsys.readouterr().out
    assert "val/acc mean ± std (n)" in printed and f"Each job: {len(VAL_ACC)} jobs ranked by val/acc" in printed
    assert printed.index("val/acc mean ± std (n)") < printed.index("Each job:")


def test_a_failed_job_is_counted_but_not_averaged(tmp_path, capsys):
    s = tmp_path / "failed"
    done = {"1": 0.8, "2": 0.9}
    for i, (seed, acc) in enumerate(done.items()):
        _job(s, str(i), ["model.optimizer.lr=0.001", f"seed={seed}"], {"status": "completed", "val/acc": acc})
    # it failed after training, with a better value than either: it must not raise the mean
    _job(s, "2", ["model.optimizer.lr=0.001", "seed=3"], {"status": "failed", "val/acc": 0.99, "error": "boom"})
    _job(s, "3", ["model.optimizer.lr=0.003", "seed=1"], {"status": "failed", "error": "boom"})
    _job(s, "4", ["model.optimizer.lr=0.003", "seed=2"], {"status": "completed", "val/acc": 0.7})
    result = summarize(s, average_over="seed")
    rows = {r["model.optimizer.lr"]: r for r in result["averaged"]["rows"]}
    assert rows["0.001"]["val/acc mean"] == pytest.approx(statistics.mean(done.values()))
    assert rows["0.001"]["val/acc std"] == pytest.approx(statistics.stdev(done.values()))
    assert (rows["0.001"]["n"], rows["0.001"]["val/acc n"], rows["0.001"]["status"]) == (3, 2, "2 completed, 1 failed")
    # one averaged job: its value, no std
    assert (rows["0.003"]["val/acc mean"], rows["0.003"]["val/acc std"], rows["0.003"]["val/acc n"]) == (0.7, None, 1)
    assert [r["rank"] for r in result["averaged"]["rows"]] == [1, 2]
    notes = result["averaged"]["notes"]
    assert any(n.startswith("not averaged: job(s) 2 (failed), 3 (failed)") for n in notes)
    main([str(s), "--average-over", "seed"])
    assert "| 0.7 (1) |" in (s / "summary.md").read_text()
    assert "counted in n but not in the means" in capsys.readouterr().out


def test_a_group_with_no_completed_job_is_listed_last_unranked(tmp_path):
    s = tmp_path / "none"
    _job(s, "0", ["model.optimizer.lr=0.01", "seed=1"], {"status": "interrupted", "val/acc": 0.99})
    _job(s, "1", ["model.optimizer.lr=0.01", "seed=2"], {"status": "failed", "error": "boom"})
    _job(s, "2", ["model.optimizer.lr=0.001", "seed=1"], {"status": "completed", "val/acc": 0.5})
    _job(s, "3", ["model.optimizer.lr=0.001", "seed=2"], {"status": "completed", "val/acc": 0.6})
    rows = summarize(s, average_over="seed")["averaged"]["rows"]
    assert [(r["rank"], r["model.optimizer.lr"], r["val/acc n"], r["val/acc mean"]) for r in rows] == [
        (1, "0.001", 2, pytest.approx(0.55)), ("-", "0.01", 0, None)]


def test_two_keys_average_over_repeated_splits_and_seeds(tmp_path):
    s = tmp_path / "splits"
    acc = {}
    for i, (width, seed, split) in enumerate((w, a, b) for w in ("32", "64") for a in "12" for b in "78"):
        acc[width, seed, split] = 0.5 + 0.1 * int(seed) + 0.01 * int(split) + (0.2 if width == "64" else 0.0)
        _job(s, str(i), [f"model.net.hidden={width}", f"seed={seed}", f"data.split_seed={split}"],
             {"status": "completed", "val/acc": acc[width, seed, split]})
    rows = summarize(s, average_over="seed, data.split_seed")["averaged"]["rows"]
    assert [r["model.net.hidden"] for r in rows] == ["64", "32"]
    for row in rows:
        values = [v for k, v in acc.items() if k[0] == row["model.net.hidden"]]
        assert (row["n"], row["val/acc mean"]) == (4, pytest.approx(statistics.mean(values)))
        assert row["val/acc std"] == pytest.approx(statistics.stdev(values))


def test_a_key_that_is_not_swept_names_the_swept_keys(seeds, capsys):
    with pytest.raises(LitlabError, match=r"--average-over data\.split_seed: data\.split_seed is not swept in .*"
                                          r"The keys swept there are: model\.optimizer\.lr, seed\."):
        summarize(seeds, average_over="seed,data.split_seed")
    with pytest.raises(SystemExit) as exit_info:
        main([str(seeds), "--average-over", "sed"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: --average-over sed: sed is not swept") and "--average-over seed" in err
    assert not (seeds / "summary.csv").exists()  # nothing written


def test_a_key_with_one_value_is_a_note(tmp_path):
    s = tmp_path / "one_seed"
    for i, lr in enumerate(("0.001", "0.003")):
        _job(s, str(i), [f"model.optimizer.lr={lr}", "seed=7"], {"status": "completed", "val/acc": 0.8 + 0.1 * i})
    averaged = summarize(s, average_over="seed")["averaged"]
    assert [(r["model.optimizer.lr"], r["n"]) for r in averaged["rows"]] == [("0.003", 1), ("0.001", 1)]
    assert any(n.startswith("--average-over seed: every job has seed=7, so it averages nothing") for n in
               averaged["notes"])


def test_an_optuna_search_has_one_job_per_row_and_says_so(tmp_path):
    """Optuna draws a new learning rate for every trial: no two trials differ only in the seed."""
    s = tmp_path / "optuna"
    trials = [("0.00123", "1", 0.8), ("0.00456", "2", 0.9), ("0.00789", "1", 0.85)]
    for i, (lr, seed, acc) in enumerate(trials):
        _job(s, str(i), ["hparams_search=digits_optuna", f"model.optimizer.lr={lr}", f"seed={seed}"],
             {"status": "completed", "val/acc": acc})
    averaged = summarize(s, average_over="seed")["averaged"]
    assert [(r["rank"], r["model.optimizer.lr"], r["n"], r["val/acc mean"], r["val/acc std"])
            for r in averaged["rows"]] == [(1, "0.00456", 1, 0.9, None), (2, "0.00789", 1, 0.85, None),
                                           (3, "0.00123", 1, 0.8, None)]
    assert any(n.startswith("every row holds one job: no two jobs differ only in seed") for n in averaged["notes"])


def test_a_plain_summary_after_an_averaged_one_removes_summary_jobs_csv(seeds):
    summarize(seeds, average_over="seed")
    assert (seeds / "summary_jobs.csv").is_file()
    result = summarize(seeds)
    assert result["averaged"] is None and not (seeds / "summary_jobs.csv").exists()
    assert len(_csv(seeds / "summary.csv")) == len(VAL_ACC)  # the jobs again


def test_help_says_where_the_per_job_table_goes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "summary_jobs.csv" in " ".join(capsys.readouterr().out.split())


def test_a_bookkeeping_key_is_not_averaged_over(tmp_path):
    """Each job's own output folder differs between jobs, but it is no setting: refused, not a group per folder."""
    s = tmp_path / "paths"
    for i, seed in enumerate("12"):
        _job(s, str(i), [f"seed={seed}", f"paths.output_dir=/tmp/out/{i}"], {"status": "completed", "val/acc": 0.8})
    with pytest.raises(LitlabError, match=r"paths\.output_dir is not swept in .* \(it says where files go or how the "
                                          r"sweep runs, not what a job trains\).*The keys swept there are: seed\."):
        summarize(s, average_over="paths.output_dir")


def test_a_value_typed_another_way_is_the_same_setting(tmp_path, capsys):
    """A job resumed by hand records the learning rate as typed (``1e-3``), the sweep's others as
    Hydra wrote them (``0.001``): they were two groups of one setting, each mean over part of its seeds."""
    s = tmp_path / "typed"
    accs = {"1": 0.80, "2": 0.84, "3": 0.90}
    for i, (seed, acc) in enumerate(accs.items()):
        lr = "1e-3" if seed == "2" else "0.001"  # job 1 resumed with its overrides typed again
        _job(s, str(i), [f"model.optimizer.lr={lr}", f"seed={seed}"], {"status": "completed", "val/acc": acc})
    _job(s, "3", ["model.optimizer.lr=0.01", "seed=1"], {"status": "completed", "val/acc": 0.5})
    averaged = summarize(s, average_over="seed")["averaged"]
    assert [(r["model.optimizer.lr"], r["jobs"], r["n"]) for r in averaged["rows"]] == [("0.001", "0 1 2", 3),
                                                                                        ("0.01", "3", 1)]
    assert averaged["rows"][0]["val/acc mean"] == pytest.approx(statistics.mean(accs.values()))
    assert averaged["rows"][0]["val/acc std"] == pytest.approx(statistics.stdev(accs.values()))
    main([str(s), "--average-over", "seed"])
    assert capsys.readouterr().out.startswith("2 groups of 4 jobs averaged over seed")


def test_one_group_is_said_in_the_singular(tmp_path, capsys):
    s = tmp_path / "one"
    for i, seed in enumerate("123"):
        _job(s, str(i), ["model.optimizer.lr=0.001", f"seed={seed}"], {"status": "completed", "val/acc": 0.8})
    main([str(s), "--average-over", "seed"])
    assert capsys.readouterr().out.startswith("1 group of 3 jobs averaged over seed")
    assert (s / "summary.md").read_text().startswith("# Sweep one: 1 group of 3 jobs averaged over seed")


def test_test_figures_of_the_validation_split_are_marked_and_not_averaged_with_test_ones(tmp_path, capsys):
    """Jobs of an image folder without test/ record ``test_split: val``: their test/acc is a
    validation figure. The grouped rows lost that mark, and a group of both kinds averaged a
    validation figure with a test one."""
    from litlab.sweeps.sweep_table import TEST_SPLIT_LEGEND

    s = tmp_path / "splits"
    jobs = {  # job: (data, seed, test_split, val/acc, test/acc)
        "0": ("a", "1", "val", 0.80, 0.80), "1": ("a", "2", "val", 0.90, 0.90),
        "2": ("b", "1", None, 0.70, 0.60), "3": ("b", "2", None, 0.75, 0.65),
        "4": ("c", "1", "val", 0.60, 0.60), "5": ("c", "2", None, 0.65, 0.50),
    }
    for name, (data, seed, split, val, test) in jobs.items():
        record = {"status": "completed", "val/acc": val, "test/acc": test, **({"test_split": split} if split else {})}
        _job(s, name, [f"data.root={data}", f"seed={seed}"], record)
    averaged = summarize(s, average_over="seed")["averaged"]
    rows = {r["data.root"]: r for r in averaged["rows"]}
    assert {k: r["test_split"] for k, r in rows.items()} == {"a": "val", "b": "test", "c": "mixed"}
    assert rows["a"]["test/acc mean"] == pytest.approx(0.85) and rows["b"]["test/acc mean"] == pytest.approx(0.625)
    assert (rows["c"]["test/acc mean"], rows["c"]["test/acc n"]) == (None, 0)  # 0.6 (val) and 0.5 (test): no mean
    assert rows["c"]["val/acc mean"] == pytest.approx(0.625)  # the val figures are one split's: averaged
    notes = averaged["notes"]
    assert TEST_SPLIT_LEGEND in notes
    assert any(n.startswith("test_split mixed: row(s) of jobs 4 5 ") and "test/acc is not averaged" in n
               for n in notes)
    written = _csv(s / "summary.csv")
    assert {r["data.root"]: r["test_split"] for r in written} == {"a": "val", "b": "test", "c": "mixed"}
    assert [r["test/acc mean"] == "" for r in written] == [r["data.root"] == "c" for r in written]
    md = (s / "summary.md").read_text()
    assert md.index(TEST_SPLIT_LEGEND) < md.index("## Each job of sweep")  # among the grouped table's notes
    main([str(s), "--average-over", "seed"])
    printed = capsys.readouterr().out
    assert printed.index("test_split mixed") < printed.index("Each job:")
