#!/bin/sh
# Reproduces docs/rightsizing.md: the comparison table, the per-dataset breakdown and the trade-off plot.
# Usage: scripts/rightsizing/reproduce.sh [TRACES_DIR]   (default ../shared/data/traces)
set -eu
traces=${1:-../shared/data/traces}
SQLX_OFFLINE=true cargo build --quiet
./target/debug/headroom bench rightsizing --traces "$traces" --by-dataset --svg docs/rightsizing-tradeoff.svg \
    --per-series target/rightsizing-per-series.csv
# The split the policy's knobs were chosen on: training part only, its own last 7 days held out.
./target/debug/headroom bench rightsizing --traces "$traces" --validation
