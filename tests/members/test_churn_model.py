"""The BG/NBD wrapper reproduces the published CDNOW fit and predicts sensibly."""

import warnings

import numpy as np
import pytest

from members import churn_model


@pytest.fixture(scope="module")
def cdnow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes.datasets import load_cdnow_summary

        return load_cdnow_summary(index_col=[0])


def test_golden_fit_reproduces_the_published_cdnow_parameters(cdnow):
    # Fader, Hardie & Lee (2005) and the lifetimes docs: r 0.243, alpha 4.414, a 0.793, b 2.426
    # on the CDNOW summary (time in weeks).
    params = churn_model.fit(
        frequency=cdnow["frequency"], recency=cdnow["recency"], T=cdnow["T"], unit_days=churn_model.DAYS_PER_UNIT
    )

    assert params.r == pytest.approx(0.243, abs=1e-3)
    assert params.alpha == pytest.approx(4.414, abs=1e-3)
    assert params.a == pytest.approx(0.793, abs=1e-3)
    assert params.b == pytest.approx(2.426, abs=1e-3)


def test_grouped_summaries_with_weights_fit_the_same(cdnow):
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="customers")

    params = churn_model.fit(
        frequency=grouped["frequency"],
        recency=grouped["recency"],
        T=grouped["T"],
        weights=grouped["customers"],
        unit_days=churn_model.DAYS_PER_UNIT,
    )

    assert params.r == pytest.approx(0.243, abs=1e-3) and params.b == pytest.approx(2.426, abs=1e-3)


def test_predictions_follow_the_model():
    params = churn_model.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    weeks = churn_model.DAYS_PER_UNIT
    # Same history, last purchase recent vs long ago; and a customer with no repeat purchase.
    prediction = churn_model.predict(
        params=params,
        frequency=np.array([5, 5, 0]),
        recency=np.array([38 * weeks, 5 * weeks, 0]),
        T=np.array([39 * weeks, 39 * weeks, 39 * weeks]),
        horizons_days=(30, 90),
    )

    recent, lapsed, single = prediction.p_alive
    assert recent > 0.8 > 0.3 > lapsed
    assert single == pytest.approx(1.0)  # BG/NBD: no repeat purchase, no evidence of dropping out
    thirty, ninety = prediction.expected
    assert (ninety > thirty).all() and thirty[0] > thirty[1]


def test_too_little_data_is_reported_not_crashed():
    with pytest.raises(churn_model.ChurnModelError):
        churn_model.fit(frequency=[0, 0], recency=[0, 0], T=[10, 20])
