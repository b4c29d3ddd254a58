"""A run's results as plain JSON data (money stays integer cents), for files and other tools."""

from __future__ import annotations

from typing import Any

from alluse.application.run_results import AccountRun, AccountWeek, RunResult


def run_to_jsonable(result: RunResult) -> dict[str, Any]:
    return {
        "seed": result.seed,
        "weeks": result.weeks,
        "elapsed_seconds": round(result.elapsed_seconds, 3),
        "dynamodb_requests": result.dynamodb_requests,
        "account_weeks": result.account_weeks,
        "start_equity_cents": result.start_equity_cents,
        "end_equity_cents": result.end_equity_cents,
        "income_cents": result.income_cents,
        "trades": result.trades,
        "week_types": dict(sorted(result.week_type_counts().items())),
        "week_type_prediction_hits": list(result.type_hits()),
        "week_mode_guess_hits": list(result.mode_hits()),
        "protocol_events": dict(result.protocol_events.most_common()),
        "forks": [
            {"parent": p, "child": c, "amount_cents": cents, "on": day.isoformat()} for p, c, cents, day in result.forks
        ],
        "merges": [
            {"child": c, "into": i, "amount_cents": cents, "on": day.isoformat()} for c, i, cents, day in result.merges
        ],
        "accounts": [_account(a) for a in result.accounts],
    }


def _account(run: AccountRun) -> dict[str, Any]:
    return {
        "account_id": run.account_id,
        "name": run.name,
        "parent_id": run.parent_id,
        "merged_into": run.merged_into,
        "start_equity_cents": run.start_equity_cents,
        "end_equity_cents": run.end_equity_cents,
        "income_cents": run.income_cents,
        "trades": run.trades,
        "failure": run.failure,
        "weeks": [_week(w) for w in run.weeks],
    }


def _week(week: AccountWeek) -> dict[str, Any]:
    return {
        "week_start": week.week_start.isoformat(),
        "equity_cents": week.equity_cents,
        "premium_cents": week.premium_cents,
        "realized_cents": week.realized_cents,
        "commission_cents": week.commission_cents,
        "income_cents": week.income_cents,
        "trades": week.trades,
        "mode_guessed": week.mode_guessed,
        "mode_confirmed": week.mode_confirmed,
        "week_types": week.week_types,
        "week_types_predicted": week.predicted_types,
        "events": list(week.events),
    }
