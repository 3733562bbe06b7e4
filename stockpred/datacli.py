"""``python -m stockpred.data``: inspect price files, download them, or write synthetic ones.

Bad input is one line on stderr and exit 2 (:class:`DataError` names the file and the row).
"""

from __future__ import annotations

import argparse
import os
import sys

from stockpred.csvfile import DataError
from stockpred.data import csv_files, detect_splits, ignored_note, read_csv
from stockpred.download import download


def inspect(directory: str) -> int:
    """Print rows, date range, gaps, cleaning and suspected splits per file.

    A bad file gets its error line (on stderr) in its turn and the others are still shown,
    so one pass finds every bad file; the exit status is then 2.
    """
    bad = 0
    for path in csv_files(directory):
        name = os.path.basename(path)
        try:
            frame, report = read_csv(path)
        except DataError as exc:
            sys.stdout.flush()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            bad += 1
            continue
        if frame.empty:
            print(f"{name}: no usable rows ({report})")
            continue
        days = frame["date"].diff().dt.days.to_numpy()[1:]
        gaps = days[days > 4]  # a long weekend is 4 calendar days
        longest = f" (longest {int(gaps.max())} days)" if len(gaps) else ""
        splits = detect_splits(frame)
        found = ", ".join(f"{s.date} {s.label}" for s in splits) or "none"
        print(f"{name}: rows {len(frame)}, {frame['date'].iloc[0].date()} .. "
              f"{frame['date'].iloc[-1].date()}, gaps {len(gaps)}{longest}, "
              f"cleaning: {report}, suspected splits: {found}")
    note = ignored_note(directory)
    if note:
        print(note)
    return 2 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stockpred.data")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("inspect", help="rows, dates, gaps, splits per file").add_argument("dir")
    fetch = sub.add_parser("download", help="optional: yfinance / FinanceDataReader")
    fetch.add_argument("tickers", help="comma-separated symbols")
    fetch.add_argument("--start", default="2010-01-01")
    fetch.add_argument("--out", default="data/prices")
    synth = sub.add_parser("synth", help="write the synthetic market as Yahoo-style CSVs")
    synth.add_argument("dir")
    synth.add_argument("--tickers", type=int, default=8)
    synth.add_argument("--days", type=int, default=500)
    synth.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            return inspect(args.dir)
        if args.command == "download":
            return download(args.tickers.split(","), args.start, args.out)
        from stockpred.synthetic import write_csvs

        write_csvs(args.dir, args.tickers, args.days, args.seed)
        return 0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
