"""Hypnogram file parsing and CSV output for the ``hypnogram-stats`` command."""

import numpy as np
import pytest

from analytics.engine.hypnogram_io import (
    HypnogramFormatError,
    format_rows_csv,
    parse_hypnogram,
    read_hypnogram,
)
from analytics.engine.metrics import night_metrics_from_list


def parse(text: str) -> list[int]:
    return parse_hypnogram(text.splitlines(keepends=True)).tolist()


class ParseHypnogramTests:
    def test_it_reads_one_digit_per_line(self):
        assert parse("0\n1\n2\n3\n4\n5\n-1\n") == [0, 1, 2, 3, 4, 5, -1]

    def test_it_returns_int8(self):
        assert parse_hypnogram(["W", "N2"]).dtype == np.int8

    @pytest.mark.parametrize(
        "label, code",
        [
            ("W", 0), ("wake", 0), ("Wake", 0),
            ("N1", 1), ("n2", 2), ("N3", 3), ("N4", 3),
            ("R", 4), ("rem", 4), ("REM", 4),
            ("L", 5), ("Light", 5),
            ("?", -1), ("-1", -1), ("A", -1), ("art", -1), ("UNS", -1), ("M", -1),
        ],
    )  # fmt: skip
    def test_it_maps_labels_case_insensitively(self, label, code):
        assert parse(f"{label}\n") == [code]

    def test_it_skips_blank_and_comment_lines(self):
        assert parse("# scored by RS\n\nW\n   \n# lights off\nN1\r\nN2\n\n") == [0, 1, 2]

    def test_it_ignores_a_byte_order_mark_and_surrounding_spaces_and_quotes(self):
        assert parse('\ufeffW\n  "N2" \n') == [0, 2]

    def test_it_takes_the_last_column_of_a_csv_without_header(self):
        assert parse("0,W\n30,N1\n60,N2\n") == [0, 1, 2]

    def test_it_takes_the_last_column_of_a_tsv(self):
        assert parse("23:00:00\tW\n23:00:30\tREM\n") == [0, 4]

    def test_it_uses_the_named_stage_column_of_a_header(self):
        text = "epoch,Sleep_Stage,confidence\n1,W,0.9\n2,N3,0.8\n"
        assert parse(text) == [0, 3]

    @pytest.mark.parametrize("name", ["stage", "LABEL", "sleep_stage"])
    def test_it_recognizes_each_stage_column_name(self, name):
        assert parse(f"{name};onset\nN2;0\nR;30\n") == [2, 4]

    def test_it_treats_a_first_row_without_stage_values_as_a_header(self):
        assert parse("time,sleep\n22:00,W\n22:01,L\n") == [0, 5]

    def test_it_handles_quoted_cells_with_the_delimiter(self):
        assert parse('"a, b",W\n"c, d",N2\n') == [0, 2]

    def test_it_skips_rows_of_empty_cells(self):
        assert parse("t,stage\n1,W\n,\n2,N1\n") == [0, 1]

    def test_it_reports_an_unknown_stage_with_its_line_number(self):
        with pytest.raises(HypnogramFormatError, match=r"^line 4: unknown sleep stage 'S2'"):
            parse("# header comment\nW\n\nS2\n")

    def test_it_rejects_r_and_k_or_other_numbers_outside_our_encoding(self):
        with pytest.raises(HypnogramFormatError, match="line 2: unknown sleep stage '6'"):
            parse("0\n6\n")
        with pytest.raises(HypnogramFormatError, match="line 1: unknown sleep stage '2.0'"):
            parse("2.0\n")

    def test_it_reports_a_row_missing_the_stage_column(self):
        with pytest.raises(HypnogramFormatError, match="line 3: no value in stage column 2"):
            parse("epoch,stage\n1,W\n2\n")

    def test_it_rejects_an_empty_file(self):
        with pytest.raises(HypnogramFormatError, match="no sleep stages found"):
            parse("# nothing here\n\n")

    def test_it_reports_an_empty_cell_as_empty(self):
        with pytest.raises(HypnogramFormatError, match=r"line 2: unknown sleep stage '\(empty\)'"):
            parse("1,W\n2,\n3,N1\n")

    def test_it_never_mentions_the_path(self, tmp_path):
        path = tmp_path / "secret-participant-name.txt"
        path.write_text("W\nXYZ\n")
        with pytest.raises(HypnogramFormatError) as info:
            read_hypnogram(path)
        assert "secret" not in str(info.value) and "line 2" in str(info.value)


class ReadHypnogramTests:
    def test_it_reads_a_file(self, tmp_path):
        path = tmp_path / "night.csv"
        path.write_text("\ufeffepoch,stage\n1,W\n2,N2\n3,R\n", encoding="utf-8")
        assert read_hypnogram(path).tolist() == [0, 2, 4]

    def test_it_rejects_a_binary_file(self, tmp_path):
        path = tmp_path / "recording.edf"
        path.write_bytes(b"0       \xff\xfe\x00\x81 binary")
        with pytest.raises(HypnogramFormatError, match="not UTF-8"):
            read_hypnogram(path)


class FormatRowsCsvTests:
    def test_it_writes_a_header_and_one_row_per_night(self):
        frame = night_metrics_from_list([[0, 2, 2, 0], [0, 0]])[
            ["tib_min", "se_pct", "sol_min", "awakenings"]
        ]
        text = format_rows_csv(frame, ["a.txt", "b.txt"])
        assert text == (
            "file,tib_min,se_pct,sol_min,awakenings\na.txt,2.0,50.0,0.5,0\nb.txt,1.0,0.0,,0\n"
        )

    def test_it_rounds_to_four_decimals(self):
        frame = night_metrics_from_list([[0] * 10 + [2] * 40 + [0] * 5 + [2] * 40 + [0] * 9], 15)
        text = format_rows_csv(frame[["se_pct", "sme_pct"]], ["x"], label_column="night")
        assert text.splitlines() == ["night,se_pct,sme_pct", "x,76.9231,94.1176"]

    def test_it_rejects_a_label_count_mismatch(self):
        frame = night_metrics_from_list([[0, 2]])
        with pytest.raises(ValueError, match="2 labels for 1 rows"):
            format_rows_csv(frame, ["a", "b"])
