"""The protocol fleet run on the embedded platform (real store adapter on moto): throughput, store
requests and memory, at two fleet sizes so that linear growth can be read off.

Run: `make bench` (or `python -m bench.protocol_bench --accounts 100 1000 --weeks 4`).
Targets (issue 4, this 2-core machine): >= 100 account-weeks/s, <= 40 DynamoDB requests per account-week.
"""

from __future__ import annotations

import argparse
import os
import resource

from alluse.adapters.local.fleet_run import RunSpec, run_fleet

PLACE = {"hitl": {"premium_floor_policy": "place"}}  # trades happen, as in `make demo`


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    per_account_week = {}
    for accounts in args.accounts:
        spec = RunSpec(accounts=accounts, weeks=args.weeks, workers=args.workers, overrides=PLACE)
        result, not_created = run_fleet(spec)
        if not_created or any(a.failure for a in result.accounts):
            raise SystemExit(f"run incomplete: {not_created or [a.failure for a in result.accounts if a.failure]}")
        weeks = result.account_weeks
        per_account_week[accounts] = result.elapsed_seconds / weeks
        print(
            f"protocol run {accounts:>5} accounts x {args.weeks} weeks ({args.workers} workers): "
            f"{weeks / result.elapsed_seconds:8.1f} account-weeks/s, "
            f"{result.dynamodb_requests / weeks:5.1f} DynamoDB requests/account-week, "
            f"{result.trades:,} fills, {result.elapsed_seconds:6.1f} s"
        )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: largest worker {children:.0f} MiB, coordinator {own:.0f} MiB")
    if len(per_account_week) > 1:
        small, large = min(per_account_week), max(per_account_week)
        ratio = per_account_week[large] / per_account_week[small]
        print(f"cost per account-week at {large} vs {small} accounts: x{ratio:.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
