"""Scores statsforecast's AutoETS and MSTL on exactly the origins `headroom bench accuracy` uses.

Reads the export written by `headroom bench accuracy --export origins.csv` (each origin's resampled
training window, last 28 days, and the next 24 h of actuals with the MASE scale), fits both models per
origin, and prints median MASE and 80 % interval coverage in the same table layout as the Rust bench.

    python scripts/accuracy/compare_statsforecast.py origins.csv [--limit N] [--timing usage.csv]
"""

import argparse
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def fill(y):
    """Linear interpolation over missing slots (statsforecast needs a gap-free series)."""
    s = pd.Series(y)
    return s.interpolate(limit_direction="both").to_numpy(dtype=float)


def score(actual, pred, lo, hi, scale):
    ok = ~np.isnan(actual)
    mase = np.abs(actual[ok] - pred[ok]).mean() / scale
    inside = int(((actual[ok] >= lo[ok]) & (actual[ok] <= hi[ok])).sum())
    return mase, inside, int(ok.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("origins")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N origins")
    ap.add_argument("--timing", help="usage CSV from `headroom bench forecast --export` to time AutoETS on")
    ap.add_argument("--timing-series", type=int, default=200)
    args = ap.parse_args()

    from statsforecast.models import MSTL, AutoETS

    df = pd.read_csv(args.origins)
    results = {"autoets": [], "mstl": []}
    cover = {"autoets": [0, 0], "mstl": [0, 0]}
    cases = list(df.groupby("case", sort=True))
    if args.limit:
        cases = cases[: args.limit]
    t0 = time.time()
    for n, (_, g) in enumerate(cases):
        step = int(g["step"].iloc[0])
        scale = float(g["scale"].iloc[0])
        season = max(1, round(86400 / step))
        train = fill(g[g.role == "train"].sort_values("index")["value"].to_numpy(dtype=float))
        test = g[g.role == "test"].sort_values("index")["value"].to_numpy(dtype=float)
        h = len(test)
        for name in ("autoets", "mstl"):
            try:
                if name == "autoets":
                    m = AutoETS(season_length=season)
                else:
                    if len(train) < 2 * season + 1:
                        m = AutoETS(season_length=1)
                    else:
                        m = MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))
                f = m.forecast(y=train, h=h, level=[80])
                key = [k for k in f if k.startswith("mean")][0]
                pred = np.asarray(f[key], dtype=float)
                lo = np.asarray(f["lo-80"], dtype=float)
                hi = np.asarray(f["hi-80"], dtype=float)
            except Exception as e:  # a failed fit scores as the last value carried forward
                print(f"case {n} {name}: {e}", file=sys.stderr)
                pred = np.full(h, train[-1])
                lo, hi = pred, pred
            mase, inside, obs = score(test, pred, lo, hi, scale)
            results[name].append(mase)
            cover[name][0] += inside
            cover[name][1] += obs
        if n % 25 == 0:
            print(f"{n}/{len(cases)} origins, {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"statsforecast comparison: {len(cases)} origins")
    print("| method | median MASE | mean MASE | 80 % coverage |")
    print("|---|---|---|---|")
    for name in ("autoets", "mstl"):
        v = np.array(results[name])
        v = v[np.isfinite(v)]
        print(f"| {name} | {np.median(v):.3f} | {v.mean():.3f} | {cover[name][0] / max(1, cover[name][1]):.3f} |")

    if args.timing:
        u = pd.read_csv(args.timing)
        ids = u["series_id"].unique()[: args.timing_series]
        t = time.time()
        for sid in ids:
            y = u.loc[u.series_id == sid, "value"].to_numpy(dtype=float)
            AutoETS(season_length=24).forecast(y=y, h=24, level=[80])
        secs = time.time() - t
        print(f"AutoETS timing: {len(ids)} series in {secs:.1f} s = {secs / len(ids) * 1e3:.1f} ms per series (1 thread)")


if __name__ == "__main__":
    main()
