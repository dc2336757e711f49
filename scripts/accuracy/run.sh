#!/bin/sh
# Reproduces docs/forecast.md: the Rust benchmarks, then statsforecast on the same origins.
# Usage: scripts/accuracy/run.sh [TRACES_DIR]   (default ../shared/data/traces)
set -eu
traces=${1:-../shared/data/traces}
out=${OUT:-target/accuracy}
mkdir -p "$out"
export SQLX_OFFLINE=true
nice cargo build --release
bin=target/release/headroom
$bin bench accuracy --traces "$traces" --export "$out/origins.csv" --detail "$out/detail.csv"
$bin bench exhaustion
$bin bench forecast --series 10000 --days 30 --step 3600 --export "$out/speed.csv"
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q statsforecast pandas; }
# MSTL on every origin; AutoETS (minutes per origin) on the first ${ETS_SAMPLE:-20} of a seeded permutation.
.venv/bin/python scripts/accuracy/compare_statsforecast.py "$out/origins.csv" --jobs 2 \
    --ets-sample "${ETS_SAMPLE:-20}" --seed 4 --out "$out/statsforecast.csv" --detail "$out/detail.csv" \
    --timing "$out/speed.csv"
