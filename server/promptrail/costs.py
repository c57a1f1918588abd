"""Money: the price table, a run's cost computed from its tokens, spend aggregates and budgets.

The price table ships as package data (``data/prices.toml``, versioned, with the date its
figures were taken) and can be overridden or extended by ``[prices]`` in ``.promptrail.toml``.
An unknown model has an unknown cost (None), never 0. A run keeps the cost its agent reported
and the cost computed here (each model at its own prices when the agent reports tokens per model);
when both exist and differ by more than 5 % the run is flagged ``cost_mismatch``; a reported cost
that is negative, NaN or infinite is unknown (``reported_cost``). Budgets (``[budget]``) are
checked before a run starts.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from promptrail.config import ConfigValueError
from promptrail.errors import PromptrailError

if TYPE_CHECKING:
    from promptrail.agents.base import Finished, Usage

MISMATCH_TOLERANCE = 0.05
_PRICE_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_BUDGET_KEYS = {"per_run_usd", "per_user_day_usd", "per_repo_day_usd"}
GROUPINGS = {"user": "actor_email", "model": "model", "day": "date(started_at, 'localtime')", "agent": "agent"}


@dataclass(frozen=True)
class Price:
    pattern: str
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


@dataclass(frozen=True)
class PriceTable:
    prices: tuple[Price, ...]
    version: int
    taken: str

    def find(self, model: str | None) -> Price | None:
        if not model:
            return None
        bare = re.sub(r"\[[^\]]*\]$", "", model.strip())
        return next((p for p in self.prices if fnmatch.fnmatchcase(bare, p.pattern)), None)


def _prices(entries: Any) -> list[Price]:
    """``[[model]]`` tables as prices. Every price is required: an entry that left out its cache
    prices would otherwise price those tokens at $0."""
    if not isinstance(entries, list):
        raise ConfigValueError("[prices] model must be [[prices.model]] tables, one per model pattern", "model")
    prices = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str) or not entry["pattern"]:
            raise ConfigValueError('each [[prices.model]] table needs a pattern, a glob of model ids such as '
                                   '"claude-sonnet-4*"', "model", index, "pattern")
        pattern = entry["pattern"]
        unknown = sorted(set(entry) - {"pattern", *_PRICE_KEYS})
        if unknown:
            raise ConfigValueError(f"unknown key '{unknown[0]}' in [[prices.model]] '{pattern}'; known keys: "
                                   f"pattern, {', '.join(_PRICE_KEYS)}", "model", index, unknown[0])
        values = {}
        for key in _PRICE_KEYS:
            if key not in entry:
                raise ConfigValueError(f"[[prices.model]] '{pattern}' has no {key} price; give all five "
                                       f"({', '.join(_PRICE_KEYS)}) in dollars per million tokens", "model", index)
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ConfigValueError(f"[[prices.model]] '{pattern}' {key} must be dollars per million tokens "
                                       f"(a number, 0 or more), not {value!r}", "model", index, key)
            values[key] = float(value)
        prices.append(Price(pattern, **values))
    return prices


@lru_cache(maxsize=1)
def builtin_table() -> PriceTable:
    import tomllib
    from importlib import resources

    data = tomllib.loads((resources.files("promptrail") / "data" / "prices.toml").read_text("utf-8"))
    return PriceTable(tuple(_prices(data["model"])), data["version"], data["taken"])


def price_table(config_section: dict[str, Any] | None = None) -> PriceTable:
    """The built-in table with the ``[[prices.model]]`` entries of the configuration tried first.
    A mistake is a ``ConfigValueError``: read it through ``Config.parse`` to name its file and line."""
    table = builtin_table()
    if not config_section:
        return table
    unknown = sorted(set(config_section) - {"model"})
    if unknown:
        raise ConfigValueError(f"unknown key '{unknown[0]}' in [prices]; write each price as a [[prices.model]] "
                               "table", unknown[0])
    own = _prices(config_section.get("model", []))
    return PriceTable(tuple(own) + table.prices, table.version, table.taken)


def compute_cost(model: str | None, usage: Usage | None, table: PriceTable | None = None) -> float | None:
    """Dollars for ``usage`` at ``model``'s prices; None when the model or the usage is unknown.
    Cache writes are priced at the 5-minute rate except the part marked as 1-hour writes."""
    if usage is None:
        return None
    price = (table or builtin_table()).find(model)
    if price is None:
        return None
    one_hour = min(usage.cache_write_1h, usage.cache_write)
    total = (usage.input * price.input + usage.output * price.output + usage.cache_read * price.cache_read
             + (usage.cache_write - one_hour) * price.cache_write_5m + one_hour * price.cache_write_1h)
    return round(total / 1_000_000, 8)


def run_cost(usage_per_model: dict[str | None, Usage], table: PriceTable | None = None) -> float | None:
    """Dollars for a run that used several models (Claude Code's ``modelUsage`` lists a helper
    model's calls too), each at its own prices; None when any of them has no known price."""
    parts = [compute_cost(model, usage, table) for model, usage in usage_per_model.items()]
    if not parts or None in parts:
        return None
    return round(sum(parts), 8)  # type: ignore[arg-type]


def reported_cost(finished: Finished) -> tuple[float | None, str | None]:
    """The cost the agent reported, as a run keeps it, and why it was not kept. A negative figure
    would lower the day's spend against the budgets and a NaN or infinite one would poison every
    sum (an infinite one blocks every later run): both are unknown (None), never trusted."""
    figure = finished.cost_usd
    printed = finished.raw.get("total_cost_usd")
    if figure is None and isinstance(printed, float) and not math.isfinite(printed):
        figure = printed  # the stream's parser dropped it without a word: say why the cost is unknown
    if figure is None:
        return None, None
    if not math.isfinite(figure):
        return None, f"the agent reported a cost of {figure}, which is not a number of dollars"
    if figure < 0:
        return None, f"the agent reported a cost of {figure:g} dollars, which is negative"
    return figure, None


def mismatch(reported: float | None, computed: float | None) -> bool:
    if reported is None or computed is None:
        return False
    largest = max(abs(reported), abs(computed))
    return largest > 0 and abs(reported - computed) / largest > MISMATCH_TOLERANCE


# -- spend ----------------------------------------------------------------------------------------
#: The token counts a spend report sums, in the order tables show them.
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


def spend_report(store: Any, *, by: str = "day", since: str | None = None) -> dict[str, Any]:
    """Spend grouped ``by`` user | model | day | agent since a date (YYYY-MM-DD, local time).
    Runs whose cost is unknown are counted apart, never as $0."""
    if by not in GROUPINGS:
        raise PromptrailError(f"cannot group costs by '{by}'; use one of {', '.join(GROUPINGS)}")
    if since is not None:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
                raise ValueError
            date.fromisoformat(since)
        except ValueError:
            raise PromptrailError(f"--since '{since}' is not a date; write it as YYYY-MM-DD") from None
    where, params = "", []
    if since:
        where, params = "WHERE date(started_at, 'localtime') >= ?", [since]
    key = GROUPINGS[by]
    sql = f"""SELECT {key} AS key, COUNT(*) AS runs, COUNT(cost_usd) AS priced, SUM(cost_usd) AS cost_usd,
                     SUM(COALESCE(tokens_input, 0)) AS input, SUM(COALESCE(tokens_output, 0)) AS output,
                     SUM(COALESCE(tokens_cache_read, 0)) AS cache_read,
                     SUM(COALESCE(tokens_cache_write, 0)) AS cache_write,
                     SUM(cost_mismatch) AS mismatched
              FROM runs {where} GROUP BY {key} ORDER BY {key}"""
    rows = store.query(sql, params)
    groups = [{"key": r["key"], "runs": r["runs"], "cost_usd": r["cost_usd"] if r["priced"] else None,
               "unknown_cost_runs": r["runs"] - r["priced"], "cost_mismatch_runs": r["mismatched"] or 0,
               "tokens": {kind: r[kind] for kind in TOKEN_KINDS}} for r in rows]
    priced = [g["cost_usd"] for g in groups if g["cost_usd"] is not None]
    return {"by": by, "since": since, "groups": groups,
            "total": {"runs": sum(g["runs"] for g in groups), "cost_usd": sum(priced) if priced else None,
                      "unknown_cost_runs": sum(g["unknown_cost_runs"] for g in groups),
                      "tokens": {kind: sum(g["tokens"][kind] for g in groups) for kind in TOKEN_KINDS}}}


def spent_today(store: Any, actor_email: str | None = None) -> float:
    """Known spend today (local date), for everyone or one user."""
    sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM runs WHERE date(started_at, 'localtime') = date('now', 'localtime')"
    params: list[Any] = []
    if actor_email:
        sql += " AND actor_email = ?"
        params.append(actor_email)
    return float(store.query(sql, params, scalar=True))


# -- budgets ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    per_run_usd: float | None = None
    per_user_day_usd: float | None = None
    per_repo_day_usd: float | None = None


def budget_from(section: dict[str, Any]) -> Budget:
    """``[budget]``; a mistake is a ``ConfigValueError`` (``Config.parse`` names its file and line)."""
    unknown = sorted(set(section) - _BUDGET_KEYS)
    if unknown:
        raise ConfigValueError(f"unknown key '{unknown[0]}' in [budget]; known keys: "
                               f"{', '.join(sorted(_BUDGET_KEYS))}", unknown[0])
    values = {}
    for key in _BUDGET_KEYS:
        value = section.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise ConfigValueError(f"[budget] {key} must be a positive number of dollars, not {value!r}", key)
        values[key] = float(value) if value is not None else None
    return Budget(**values)


def check_budget_before_run(store: Any, budget: Budget, actor_email: str) -> None:
    """Refuse a run that would start over a daily budget, naming the budget and the spend."""
    from promptrail.queries import format_cost  # local: queries pulls in git, which a spend report never needs

    if budget.per_user_day_usd is not None:
        spent = spent_today(store, actor_email)
        if spent >= budget.per_user_day_usd:
            raise PromptrailError(f"budget reached: {actor_email} spent {format_cost(spent)} today, the per-user "
                                  f"daily budget is {format_cost(budget.per_user_day_usd)} ([budget] "
                                  "per_user_day_usd); try again tomorrow or raise it")
    if budget.per_repo_day_usd is not None:
        spent = spent_today(store)
        if spent >= budget.per_repo_day_usd:
            raise PromptrailError(f"budget reached: this repository spent {format_cost(spent)} today, its daily "
                                  f"budget is {format_cost(budget.per_repo_day_usd)} ([budget] per_repo_day_usd); "
                                  "try again tomorrow or raise it")
