"""Optional: fetch daily prices with yfinance or FinanceDataReader (KRX codes) as CSV files.

Neither library is a dependency: synthetic data and CSV files need none, and a download
without either is one line naming what to install.
"""

from __future__ import annotations

import os
import re

import pandas as pd

from stockpred.csvfile import DataError


def downloader_for(symbol: str, installed: set[str]) -> tuple[str, str]:
    """Which installed downloader fetches ``symbol``, and the symbol it knows it by.

    A 6-digit code is a KRX listing: FinanceDataReader takes it as is; yfinance only as
    ``CODE.KS`` (KOSPI; give ``CODE.KQ`` yourself for KOSDAQ). Anything else goes to yfinance,
    or to FinanceDataReader when yfinance is missing.
    """
    krx = re.fullmatch(r"\d{6}", symbol) is not None
    order = ("fdr", "yfinance") if krx else ("yfinance", "fdr")
    for name in order:
        if name in installed:
            return name, f"{symbol}.KS" if krx and name == "yfinance" else symbol
    raise DataError("download", None, "needs yfinance or FinanceDataReader "
                    "(pip install yfinance); never needed for synthetic data")


def download(tickers: list[str], start: str, out: str) -> int:
    """Fetch daily prices with yfinance or FinanceDataReader (KRX codes) into ``out``."""
    import importlib.util

    installed = {name for name, module in (("yfinance", "yfinance"),
                                           ("fdr", "FinanceDataReader"))
                 if importlib.util.find_spec(module)}
    os.makedirs(out, exist_ok=True)
    for symbol in tickers:
        use, asked = downloader_for(symbol, installed)
        try:
            if use == "yfinance":
                import yfinance

                frame = yfinance.download(asked, start=start, auto_adjust=False,
                                          progress=False)
                if isinstance(frame.columns, pd.MultiIndex):
                    frame.columns = frame.columns.get_level_values(0)
            else:
                import FinanceDataReader

                frame = FinanceDataReader.DataReader(asked, start)
        except Exception as exc:  # network, HTTP, the library's own parsing: one line
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataError(f"download {asked}", None,
                            f"{use} failed: {type(exc).__name__}: {first}") from None
        if frame is None or frame.empty:
            raise DataError(f"download {asked}", None, f"{use} returned no rows "
                            "(unknown symbol, or no network)")
        frame.index.name = "Date"
        frame.to_csv(os.path.join(out, f"{symbol}.csv"))
        print(f"{symbol}: {len(frame)} rows ({use} {asked})")
    return 0
