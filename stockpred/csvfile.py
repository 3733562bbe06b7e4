"""Reading one price file in the layouts people have: Yahoo, KRX/HTS (Korean headers too),
pandas ``to_csv()`` output, comma or tab, UTF-8 or cp949, ISO or day-first dates.

Every problem raises :class:`DataError` naming the file and the row (its line number in the
file, header = 1); cleaning the values is :mod:`stockpred.data`'s job.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

_ALIASES = {"date": "date", "datetime": "date", "timestamp": "date", "time": "date",
            "open": "open", "high": "high", "low": "low", "close": "close",
            "adjclose": "adj_close", "volume": "volume", "change": "change",
            # KRX / HTS exports in Korean: date, open, high, low, close, volume
            "일자": "date", "날짜": "date", "시가": "open", "고가": "high", "저가": "low",
            "종가": "close", "거래량": "volume"}
_MISSING = {"", "nan", "NaN", "NA", "N/A", "null", "None", "-"}


class DataError(ValueError):
    """A data file that cannot be used; ``row`` is its line number (header = 1) or None."""

    def __init__(self, path: str, row: int | None, message: str) -> None:
        where = f"{path}: row {row}" if row is not None else path
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.message = path, row, message


def read_prices(path: str, wanted: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The file's dates and ``wanted`` columns (those it has) as numbers, uncleaned, and a
    mask of its blank lines (kept so that row i is the file's line i + 2)."""
    text = read_text(path)
    header = text.split("\n", 1)[0]
    if not header.strip():
        raise DataError(path, 1, "empty file (no header line)")
    sep = "\t" if "\t" in header else ","
    try:
        raw = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                          skipinitialspace=True, skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        raise DataError(path, parser_error_line(str(exc)),
                        f"malformed line: {str(exc).strip().splitlines()[-1]}") from None
    columns = _standard_columns(path, list(raw.columns))
    blank = (raw.apply(lambda column: column.str.strip()) == "").all(axis=1).to_numpy()
    frame = pd.DataFrame({"date": _parse_dates(path, raw[columns["date"]])})
    for name in wanted:
        if name in columns:
            frame[name] = _parse_numbers(path, raw[columns[name]], name)
    return frame, blank


def parser_error_line(message: str) -> int | None:
    """The file line (header = 1) of a pandas ParserError, which counts in two ways."""
    match = re.search(r"in line (\d+)", message)  # "Expected 2 fields in line 4": 1-based
    if match:
        return int(match.group(1))
    match = re.search(r"starting at row (\d+)", message)  # "EOF inside string": 0-based
    return int(match.group(1)) + 1 if match else None


ENCODINGS = ("utf-8-sig", "cp949", "latin-1")  # cp949: Korean KRX/HTS exports; latin-1 last


def read_text(path: str) -> str:
    """The file's text: UTF-8, else cp949, else latin-1 (which decodes any byte).

    A file that cannot be opened (a directory named X.csv, no permission) or holds NUL bytes
    (binary, or UTF-16) raises :class:`DataError` instead of a traceback.
    """
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except OSError as exc:
        raise DataError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if b"\x00" in blob:
        raise DataError(path, None, "binary file (NUL bytes), not CSV text")
    for encoding in ENCODINGS:
        try:
            return blob.decode(encoding).replace("\r\n", "\n")
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def _standard_columns(path: str, names: list[str]) -> dict[str, str]:
    """Our column name -> the file's; a named date column beats a blank index column.

    ``df.to_csv()`` writes a blank (or ``Unnamed: 0``) first column of row numbers before
    ``Date``, and an index named None holds the dates with a blank header: so the blank column
    is the date only when no column is named like one.
    """
    found: dict[str, str] = {}
    for name in names:
        key = _ALIASES.get(re.sub(r"[\s_]", "", str(name)).lower())
        if key and key not in found:
            found[key] = name
    if "close" not in found and "adj_close" in found:
        found["close"] = found["adj_close"]
    if "date" not in found:
        blank = [n for n in names if re.sub(r"\s", "", str(n)).lower() in ("", "unnamed:0")]
        found["date"] = blank[0] if blank else (names[0] if names else "")
    if "close" not in found:
        raise DataError(path, 1, f"no Close column (header: {', '.join(map(str, names))})")
    return found


_NUMERIC_DMY = r"^\d{1,2}([./-])\d{1,2}\1\d{4}$"  # 02.01.2012, 01/02/2012: which is the day?


def _parse_dates(path: str, text: pd.Series) -> pd.Series:
    text = text.str.strip()
    missing = text.isin(_MISSING)
    present = text[~missing]
    if present.str.match(r"^\d{4}-\d{2}-\d{2}").all():  # ISO, maybe with a time and offset
        dates = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    elif len(present) and present.str.match(_NUMERIC_DMY).all():
        dates = _day_or_month_first(path, text, present)
    else:
        with warnings.catch_warnings():  # "Could not infer format": the error line says it
            warnings.simplefilter("ignore", UserWarning)
            dates = pd.to_datetime(text, errors="coerce")
    bad = dates.isna() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, i + 2, f"cannot parse date {text.iloc[i]!r}")
    return dates


def _day_or_month_first(path: str, text: pd.Series, present: pd.Series) -> pd.Series:
    """Read D.M.Y / M/D/Y dates with the one order that fits the whole file.

    pandas guesses from the first date, so 02.01.2012 was 1 February until a day above 12
    failed. Here each order is tried on every date: the one that parses all of them wins; if
    both do (no day above 12), the one whose dates run in order; else the file is ambiguous.
    """
    sep = re.match(_NUMERIC_DMY, present.iloc[0]).group(1)
    tries = {order: pd.to_datetime(text, format=fmt.replace("/", sep), errors="coerce")
             for order, fmt in (("month-first", "%m/%d/%Y"), ("day-first", "%d/%m/%Y"))}
    fails = {order: int(d.loc[present.index].isna().sum())
             for order, d in tries.items()}
    full = [order for order, n in fails.items() if n == 0]
    if len(full) == 2:
        ordered = [o for o in full if tries[o].dropna().is_monotonic_increasing
                   or tries[o].dropna().is_monotonic_decreasing]
        if len(ordered) == 1 or tries["month-first"].equals(tries["day-first"]):
            full = ordered[:1] or full[:1]
        else:
            raise DataError(path, None, f"ambiguous dates such as {present.iloc[0]!r}: day-first "
                            "or month-first (no day above 12 decides it); write YYYY-MM-DD")
    return tries[full[0] if full else min(fails, key=fails.get)]


def _parse_numbers(path: str, text: pd.Series, name: str) -> pd.Series:
    text = text.str.strip().str.replace(",", "", regex=False)
    missing = text.isin(_MISSING)
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, i + 2, f"{name} is not a number: {text.iloc[i]!r}")
    return values.astype(np.float64)
