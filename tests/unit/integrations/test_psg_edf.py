"""The production EDF header validation run on every upload before anything goes upstream."""

import io
from datetime import datetime

import pytest

from integrations import edf
from integrations.simulators import edf as sim_edf
from integrations.simulators.edf import make_edf


class ReadHeaderFromTests:
    def test_it_reads_only_the_header_of_a_stream(self):
        data = make_edf(600, start=datetime(2026, 3, 2, 23, 15, 0))

        class Counting(io.BytesIO):
            read_bytes = 0

            def read(self, n=-1):
                chunk = super().read(n)
                Counting.read_bytes += len(chunk)
                return chunk

        stream = Counting(data)
        header = edf.read_header_from(stream, file_size=len(data))
        assert header.labels == ["EEG C3-M2", "EOG E1-M2", "EMG chin"]
        assert header.start == datetime(2026, 3, 2, 23, 15, 0)
        assert header.duration == 600
        assert Counting.read_bytes == 256 + 3 * 256
        assert stream.tell() == 0  # rewound for whoever stores the file

    def test_it_checks_the_declared_records_against_the_file_size(self):
        data = make_edf(600)
        with pytest.raises(edf.EdfError, match="header declares 20"):
            edf.read_header_from(io.BytesIO(data[:-1]), file_size=len(data) - 1)

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"%PDF-1.7\n" + b"\0" * 600,
            b"0       " + b"\xff" * 300,
            make_edf(60)[:200],
            make_edf(60)[:300],  # signal headers cut off
        ],
        ids=["empty", "pdf", "binary-ids", "short", "truncated-signal-headers"],
    )
    def test_it_refuses_what_is_not_edf_with_edf_error_only(self, data):
        with pytest.raises(edf.EdfError):
            edf.read_header_from(io.BytesIO(data), file_size=len(data))

    def test_it_reads_two_digit_years_with_the_1985_clipping_date(self):
        data = bytearray(make_edf(60))
        data[168:176] = b"31.12.84"
        assert edf.read_header(bytes(data)).start.year == 2084
        data[168:176] = b"01.01.85"
        assert edf.read_header(bytes(data)).start.year == 1985

    def test_the_simulators_use_the_same_parser(self):
        assert sim_edf.read_header is edf.read_header
        assert sim_edf.EdfError is edf.EdfError


class AnonymizedTests:
    def test_it_blanks_the_identification_and_keeps_everything_else(self):
        data = bytearray(make_edf(120, seed=5))
        data[8:88] = b"MCH-0234567 F 02-MAY-1951 Haagse_Harry".ljust(80)
        data = bytes(data)
        out = edf.anonymized(io.BytesIO(data)).read()
        assert len(out) == len(data)
        assert out[:8] == data[:8] and out[168:] == data[168:]
        assert b"Haagse" not in out and out[8:88].strip() == b"X X X X"
        assert out[88:168].startswith(b"Startdate X X X X")
        assert edf.read_header(out).start == edf.read_header(data).start

    @pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
    def test_it_gives_the_same_bytes_whatever_the_read_size(self, chunk):
        data = make_edf(60, seed=2)
        reader = edf.anonymized(io.BytesIO(data), buffer_size=max(1, chunk // 2))
        pieces = []
        while piece := reader.read(chunk):
            pieces.append(piece)
        assert b"".join(pieces) == edf.anonymized(io.BytesIO(data)).read()

    def test_it_can_be_measured_and_rewound_like_a_file(self):
        data = make_edf(60)
        reader = edf.anonymized(io.BytesIO(data))
        assert reader.seek(0, io.SEEK_END) == len(data)
        reader.seek(0)
        assert len(reader.read()) == len(data)
