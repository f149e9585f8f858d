"""The churn model: BG/NBD (Fader, Hardie & Lee 2005) through the lifetimes library.

Everything that touches lifetimes is in this module, so the library can be replaced (e.g. by
PyMC-Marketing or a hand-written likelihood) without changing the jobs. The jobs hand over
plain numpy arrays and get numpy arrays back:

- `fit` takes per-customer summaries (x = repeat purchases, t_x = time of the last purchase
  since the first, T = age since the first purchase; all in the same unit) with optional
  weights (how many customers share that summary), and returns the four parameters.
- `predict` returns P(alive) and the expected purchases over the given horizons.

Time is measured in weeks here, as in the published CDNOW fit; callers pass days and
`DAYS_PER_UNIT` converts. lifetimes 0.11 imports pkg_resources, so setuptools must stay
installed.
"""

from dataclasses import asdict, dataclass

import numpy as np

DAYS_PER_UNIT = 7.0


class ChurnModelError(Exception):
    """The model could not be fitted (too little data, no convergence)."""


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BgNbdParams":
        return cls(r=float(data["r"]), alpha=float(data["alpha"]), a=float(data["a"]), b=float(data["b"]))


@dataclass(frozen=True)
class Prediction:
    p_alive: np.ndarray
    # One array per horizon, in the order the horizons were given.
    expected: list[np.ndarray]


def _fitter():
    import warnings

    with warnings.catch_warnings():
        # lifetimes 0.11 imports pkg_resources and uses pandas APIs that warn on import.
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter
    return BetaGeoFitter


def fit(*, frequency, recency, T, weights=None, penalizer: float = 0.0, unit_days: float = 1.0) -> BgNbdParams:
    """Fit BG/NBD on customer summaries; times are given in units of `unit_days` days.

    Customers with T == 0 (first purchase today) carry no information and are dropped.
    """
    frequency = np.asarray(frequency, dtype=float)
    recency = np.asarray(recency, dtype=float) * unit_days / DAYS_PER_UNIT
    T = np.asarray(T, dtype=float) * unit_days / DAYS_PER_UNIT
    weights = None if weights is None else np.asarray(weights, dtype=float)
    keep = T > 0
    frequency, recency, T = frequency[keep], recency[keep], T[keep]
    if weights is not None:
        weights = weights[keep]
    if len(frequency) < 2 or not (frequency > 0).any():
        raise ChurnModelError("Too few customers with repeat purchases to fit the churn model.")
    BetaGeoFitter = _fitter()
    fitter = BetaGeoFitter(penalizer_coef=penalizer)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter.fit(frequency, recency, T, weights=weights, verbose=False)
    except Exception as error:  # lifetimes raises ConvergenceError and plain numeric errors
        # lifetimes puts scipy's whole optimizer report in the message; the last line says what to do.
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        raise ChurnModelError(f"The churn model did not converge: {lines[-1] if lines else error}") from error
    params = fitter.params_
    return BgNbdParams(r=float(params["r"]), alpha=float(params["alpha"]), a=float(params["a"]), b=float(params["b"]))


def predict(*, params: BgNbdParams, frequency, recency, T, horizons_days=(30, 90)) -> Prediction:
    """P(alive) and expected purchases in each horizon, vectorised; times in days."""
    frequency = np.asarray(frequency, dtype=float)
    recency = np.asarray(recency, dtype=float) / DAYS_PER_UNIT
    T = np.asarray(T, dtype=float) / DAYS_PER_UNIT
    fitter = _fitter()()
    import pandas as pd

    fitter.params_ = pd.Series(params.as_dict())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_alive = np.asarray(fitter.conditional_probability_alive(frequency, recency, T), dtype=float)
        expected = [
            np.asarray(
                fitter.conditional_expected_number_of_purchases_up_to_time(days / DAYS_PER_UNIT, frequency, recency, T),
                dtype=float,
            )
            for days in horizons_days
        ]
    p_alive = np.clip(np.nan_to_num(p_alive, nan=0.0), 0.0, 1.0)
    expected = [np.clip(np.nan_to_num(e, nan=0.0), 0.0, None) for e in expected]
    return Prediction(p_alive=p_alive, expected=expected)
