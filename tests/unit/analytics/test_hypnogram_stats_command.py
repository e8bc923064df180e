import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[3]


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_it_prints_one_row_of_metrics_per_file(tmp_path, capsys):
    # science.md worked example 1, once as digits and once as labels.
    digits = tmp_path / "night1.txt"
    digits.write_text("\n".join(str(s) for s in [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 3, 3, 4, 4, 4, 4, 0, 0]))
    labels = tmp_path / "night2.csv"
    labels.write_text("epoch,stage\n" + "\n".join(
        f"{i},{s}" for i, s in enumerate("W W N1 N1 N1 N2 N2 N2 N3 N3 N3 N2 N3 N3 R R REM REM W W".split())
    ))
    call_command("hypnogram-stats", str(digits), str(labels))
    rows = _rows(capsys.readouterr().out)
    assert [row["file"] for row in rows] == [str(digits), str(labels)]
    for row in rows:
        assert float(row["tib_min"]) == 10.0
        assert float(row["tst_min"]) == 8.0
        assert float(row["sol_min"]) == 1.0
        assert float(row["lat_rem_min"]) == 7.0
        assert float(row["rem_latency_min"]) == 6.0
        assert float(row["n3_pct"]) == 31.25
        assert float(row["se_pct"]) == 80.0


def test_it_honours_the_epoch_length(tmp_path, capsys):
    path = tmp_path / "h.txt"
    path.write_text("\n".join(["W"] * 10 + ["N2"] * 40 + ["W"] * 5 + ["N2"] * 40 + ["W"] * 9))
    call_command("hypnogram-stats", str(path), "--epoch-seconds", "15")
    row = _rows(capsys.readouterr().out)[0]
    assert float(row["tib_min"]) == 26.0
    assert float(row["waso_min"]) == 1.25
    assert float(row["fragmentation_index"]) == 6.0


def test_it_reports_a_bad_line_clearly(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("W\nN2\nbanana\n")
    with pytest.raises(CommandError, match=r"bad.txt: .*line 3"):
        call_command("hypnogram-stats", str(path))


def test_it_runs_from_the_command_line(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("W\nN1\nN2\nN2\nW\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "hypnogram-stats", str(path)],
        cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "true", "PLATFORM_ENV_FILE": "/nonexistent",
             "PLATFORM_VAR_DIR": str(tmp_path / "var")},
    )
    assert result.returncode == 0, result.stderr
    assert _rows(result.stdout)[0]["tst_min"] == "1.5"
