import numpy as np
import pandas as pd
import pytest

from analytics.engine.trends import monthly_trends


def _nights(rows):
    return pd.DataFrame(rows, columns=["participant_id", "night_date", "tst_min", "is_nap"])


class MonthlyTrendsTests:
    def test_it_averages_each_month_over_its_nights(self):
        nights = _nights([
            (1, "2026-01-31", 400.0, False), (2, "2026-01-15", 440.0, False), (3, "2026-01-02", 420.0, False),
            (1, "2026-02-01", 300.0, False), (1, "2026-01-20", 999.0, True),  # a nap: left out
        ])
        out = monthly_trends(nights, metric="tst", min_group_size=3, start="2026-01-01", end="2026-02-28")
        assert out["month"].tolist() == ["2026-01", "2026-02"]
        jan, feb = out.iloc[0], out.iloc[1]
        assert (jan["participants"], jan["nights"], jan["mean"], jan["median"]) == (3, 3, 420.0, 420.0)
        assert feb["suppressed"] and feb["suppression_reason"] == "below_min_group_size"
        assert pd.isna(feb["participants"]) and np.isnan(feb["mean"])

    def test_an_empty_month_is_zero_not_suppressed(self):
        out = monthly_trends(_nights([]), metric="tst", min_group_size=3, start="2026-01-01", end="2026-01-31")
        assert out.iloc[0]["participants"] == 0 and not out.iloc[0]["suppressed"]

    def test_it_ignores_nights_outside_the_range_and_refuses_unknown_metrics(self):
        nights = _nights([(p, "2025-12-31", 100.0, False) for p in range(5)])
        out = monthly_trends(nights, metric="tst", min_group_size=3, start="2026-01-01", end="2026-01-31")
        assert out.iloc[0]["nights"] == 0
        with pytest.raises(ValueError):
            monthly_trends(nights, metric="rem", min_group_size=3, start="2026-01-01", end="2026-01-31")
