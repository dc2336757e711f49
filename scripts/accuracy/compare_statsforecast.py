"""Scores statsforecast's AutoETS and MSTL on exactly the origins `headroom bench accuracy` uses.

Reads the export written by `headroom bench accuracy --export origins.csv` (each origin's resampled
training window, last 28 days, and the next 24 h of actuals with the MASE scale), fits the models per
origin on `--jobs` processes, writes one row per origin and model to `--out` as results arrive, and
prints median MASE and 80 % interval coverage in the same table layout as the Rust bench. With
`--detail` (the bench's `--detail` CSV) it also prints headroom's figures on the same origins.

Both models use the daily period as season length (1440 slots at a 60 s step, 288 at 5 min); a weekly
period is not added, since most training windows hold under three weeks. AutoETS costs about a minute
per origin at 5 min steps, so `--ets-sample N` scores it on a fixed random subset: the first N origins of
a permutation drawn with `--seed`. When AutoETS cannot fit the daily season (it refuses some 1440-slot
seasons with "Parameters out of range"), the non-seasonal AutoETS is used and the row says so.

    python scripts/accuracy/compare_statsforecast.py origins.csv --jobs 2 --ets-sample 80 \
        --out sf.csv --detail detail.csv [--timing usage.csv]
    python scripts/accuracy/compare_statsforecast.py --summary sf.csv --detail detail.csv
"""

import argparse
import csv
import multiprocessing
import os
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


def fit(name, train, h, season):
    from statsforecast.models import MSTL, AutoETS

    if name == "autoets":
        m = AutoETS(season_length=season)
    elif len(train) < 2 * season + 1:
        m = AutoETS(season_length=1)
    else:
        m = MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))
    f = m.forecast(y=train, h=h, level=[80])
    key = [k for k in f if k.startswith("mean")][0]
    return (
        np.asarray(f[key], dtype=float),
        np.asarray(f["lo-80"], dtype=float),
        np.asarray(f["hi-80"], dtype=float),
    )


def run_task(task):
    """One (origin, model) fit; returns the output row."""
    name, meta, train, test = task
    season = max(1, round(86400 / meta["step"]))
    t = time.time()
    note = ""
    try:
        pred, lo, hi = fit(name, train, len(test), season)
    except Exception as e:  # noqa: BLE001 - statsforecast raises bare Exception
        note = f"fallback non-seasonal: {e}"
        try:
            pred, lo, hi = fit("autoets", train, len(test), 1)
        except Exception as e2:  # noqa: BLE001
            note = f"failed, last value carried: {e2}"
            pred = np.full(len(test), train[-1])
            lo, hi = pred, pred
    mase, inside, obs = score(test, pred, lo, hi, meta["scale"])
    return {
        **meta,
        "model": name,
        "mase": mase,
        "inside": inside,
        "observed": obs,
        "seconds": round(time.time() - t, 2),
        "note": note,
    }


FIELDS = ["case", "dataset", "series", "origin", "step", "scale", "model", "mase", "inside", "observed", "seconds", "note"]


def summarize(rows, detail):
    df = pd.DataFrame(rows).astype({"origin": int, "mase": float, "inside": int, "observed": int})
    print("| method | origins | median MASE | mean MASE | 80 % coverage | headroom median MASE, same origins | fallbacks |")
    print("|---|---|---|---|---|---|---|")
    hd = None
    if detail:
        hd = pd.read_csv(detail)
        hd["origin"] = hd["origin"].astype(int)
    for name, g in df.groupby("model"):
        v = g["mase"].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        cov = g["inside"].sum() / max(1, g["observed"].sum())
        ours = ""
        if hd is not None:
            m = g[["dataset", "series", "origin"]].merge(hd, on=["dataset", "series", "origin"])
            ours = f"{m['headroom'].median():.3f} ({len(m)})"
        fallbacks = int((g["note"].fillna("") != "").sum())
        print(f"| {name} | {len(g)} | {np.median(v):.3f} | {v.mean():.3f} | {cov:.3f} | {ours} | {fallbacks} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("origins", nargs="?")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--ets-sample", type=int, default=0, help="AutoETS on this many origins (0: all)")
    ap.add_argument("--mstl-sample", type=int, default=0, help="MSTL on this many origins (0: all)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--out", default="statsforecast.csv")
    ap.add_argument("--detail", help="per-origin CSV from `headroom bench accuracy --detail`")
    ap.add_argument("--summary", help="only summarize an existing --out file")
    ap.add_argument("--timing", help="usage CSV from `headroom bench forecast --export` to time AutoETS on")
    ap.add_argument("--timing-series", type=int, default=200)
    args = ap.parse_args()

    if args.summary:
        with open(args.summary) as f:
            summarize(list(csv.DictReader(f)), args.detail)
        return

    df = pd.read_csv(args.origins)
    cases = []
    for case, g in df.groupby("case", sort=True):
        meta = {
            "case": int(case),
            "dataset": g["dataset"].iloc[0],
            "series": g["series"].iloc[0],
            "origin": int(g["origin"].iloc[0]),
            "step": int(g["step"].iloc[0]),
            "scale": float(g["scale"].iloc[0]),
        }
        train = fill(g[g.role == "train"].sort_values("index")["value"].to_numpy(dtype=float))
        test = g[g.role == "test"].sort_values("index")["value"].to_numpy(dtype=float)
        cases.append((meta, train, test))
    del df
    order = np.random.default_rng(args.seed).permutation(len(cases))

    def pick(n):
        return [cases[i] for i in (order[:n] if n else order)]

    # MSTL first (seconds per origin), then AutoETS (about a minute per origin).
    tasks = [("mstl", *c) for c in pick(args.mstl_sample)] + [("autoets", *c) for c in pick(args.ets_sample)]
    print(f"{len(cases)} origins; {len(tasks)} fits on {args.jobs} processes", file=sys.stderr)
    rows = []
    t0 = time.time()
    with open(args.out, "w", newline="") as f, multiprocessing.Pool(args.jobs) as pool:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for n, row in enumerate(pool.imap_unordered(run_task, tasks, chunksize=1)):
            w.writerow(row)
            f.flush()
            rows.append(row)
            if n % 20 == 0:
                print(f"{n + 1}/{len(tasks)} fits, {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"statsforecast comparison: {len(cases)} origins, {time.time() - t0:.0f} s on {args.jobs} processes")
    summarize(rows, args.detail)

    if args.timing:
        from statsforecast.models import AutoETS

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
