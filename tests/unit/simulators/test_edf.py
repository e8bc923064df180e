"""The tiny EDF writer/reader used by the PSG simulators, tests and demo."""

from datetime import datetime

import numpy as np
import pytest

from integrations.simulators import edf
from integrations.simulators.nights import synthetic_hypnogram


class EdfTests:
    def test_it_round_trips_the_header(self):
        start = datetime(2025, 2, 3, 22, 15, 0)
        data = edf.make_edf(600, start=start, seed=3)
        h = edf.read_header(data)
        assert h.labels == ["EEG C3-M2", "EOG E1-M2", "EMG chin"]
        assert h.start == start
        assert h.n_records == 20 and h.record_duration == 30
        assert h.duration == 600
        assert h.header_bytes == 256 + 3 * 256
        assert [s.sampling_rate(h.record_duration) for s in h.signals] == [64, 64, 64]
        assert len(data) == h.header_bytes + h.n_records * h.record_bytes

    def test_records_are_int16_within_the_digital_range(self):
        data = edf.make_edf(60, seed=1, stages=np.array([0, 3], dtype=np.int8))
        h = edf.read_header(data)
        samples = np.frombuffer(edf.data_section(data, h), dtype="<i2")
        assert samples.size == 60 * 64 * 3
        assert samples.min() >= -32768 and samples.max() <= 32767 and samples.std() > 0

    def test_deep_sleep_has_bigger_eeg(self):
        stages = synthetic_hypnogram(b"s", 120)
        data = edf.make_edf(3600, seed=2, stages=stages)
        h = edf.read_header(data)
        x = np.frombuffer(edf.data_section(data, h), dtype="<i2").reshape(h.n_records, -1)[:, :1920]
        per_epoch = x.std(axis=1)
        assert per_epoch[stages == 3].mean() > 1.5 * per_epoch[stages == 0].mean()

    def test_anonymizing_the_header_keeps_the_data_section(self):
        data = bytearray(edf.make_edf(120, seed=5))
        before = edf.data_section(bytes(data), edf.read_header(bytes(data)))
        data[8:88] = b"X X X X_X".ljust(80)
        data[168:184] = b"01.01.7000.00.00"
        after = edf.data_section(bytes(data), edf.read_header(bytes(data)))
        assert before == after

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda d: d[:100],
            lambda d: b"1" + d[1:],
            lambda d: d[:252] + b"9999" + d[256:],
            lambda d: d[:236] + b"abc     " + d[244:],
            lambda d: d[:244] + b"0       " + d[252:],
            lambda d: d[: len(d) - 10],
            lambda d: d[:184] + b"12      " + d[192:],
            lambda d: d[:168] + b"99.99.99" + d[176:],
        ],
    )
    def test_bad_files_raise_edf_error_only(self, mutate):
        data = edf.make_edf(60)
        with pytest.raises(edf.EdfError):
            edf.read_header(mutate(data))

    def test_random_garbage_raises_edf_error_only(self):
        rng = np.random.default_rng(0)
        good = edf.make_edf(60)
        for _ in range(300):
            data = bytearray(good)
            for i in rng.integers(0, 1024, 6):
                data[i] = int(rng.integers(0, 256))
            try:
                edf.read_header(bytes(data))
            except edf.EdfError:
                pass

    def test_channel_types(self):
        assert [
            edf.infer_channel_type(x)
            for x in ["EEG C3-M2", "EOG E1-M2", "EMG chin", "C4-M1", "F3:M2", "M1", "ECG", "E2-M1"]
        ] == ["EEG", "EOG", "EMG", "EEG", "EEG", "MASTOID", "OTHER", "EOG"]
