"""stockpred.data: CSV layouts, loud cleaning, bad files named by row, split detection."""

import numpy as np
import pandas as pd
import pytest

from stockpred import data, datacli, download
from stockpred.data import DataError, detect_splits, read_csv
from stockpred.synthetic import synthetic_market

YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2020-01-02,10.0,10.5,9.8,10.2,10.1,1000
2020-01-03,10.2,10.6,10.0,10.4,10.3,1100
2020-01-06,10.4,10.9,10.3,10.8,10.7,1200
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name, text", [
    ("yahoo.csv", YAHOO),
    ("krx.csv", "Date,Open,High,Low,Close,Volume,Change\n"
                "2020-01-02,10.0,10.5,9.8,10.2,1000,0.01\n"
                "2020-01-03,10.2,10.6,10.0,10.4,1100,0.0196\n"
                "2020-01-06,10.4,10.9,10.3,10.8,1200,0.0385\n"),
    ("lower.csv", YAHOO.replace("Date,Open,High,Low,Close,Adj Close,Volume",
                                "date,open,high,low,close,adj_close,volume")),
    ("upper.csv", YAHOO.replace("Date,Open,High,Low,Close,Adj Close,Volume",
                                "DATE,OPEN,HIGH,LOW,CLOSE,ADJ CLOSE,VOLUME")),
    ("tab.tsv", YAHOO.replace(",", "\t")),
    ("index.csv", YAHOO.replace("Date,", ",", 1)),  # pandas' to_csv with an unnamed index
    ("rownumbers.csv", ",".join(["", YAHOO.splitlines()[0]]) + "\n"  # df.to_csv() default
     + "".join(f"{i},{line}\n" for i, line in enumerate(YAHOO.splitlines()[1:]))),
    ("unnamed.csv", "Unnamed: 0," + YAHOO.splitlines()[0] + "\n"
     + "".join(f"{i},{line}\n" for i, line in enumerate(YAHOO.splitlines()[1:]))),
    ("tz.csv", YAHOO.replace("2020-01-02,", "2020-01-02 00:00:00-05:00,")),
])
def test_common_layouts_read_the_same_prices(tmp_path, name, text):
    frame, report = read_csv(write(tmp_path, name, text))
    assert list(frame["close"]) == [10.2, 10.4, 10.8]
    assert list(frame["volume"]) == [1000, 1100, 1200]
    assert str(frame["date"].iloc[0].date()) == "2020-01-02"
    assert report.total() == 0


def test_date_close_only_file_keeps_close_and_nothing_else(tmp_path):
    frame, _ = read_csv(write(tmp_path, "c.csv", "Date,Close\n2020-01-02,5\n2020-01-03,6\n"))
    assert list(frame.columns) == ["date", "close"]
    assert list(frame["close"]) == [5.0, 6.0]


def test_cleaning_counts_every_change(tmp_path):
    text = """Date,Open,High,Low,Close,Volume
2020-01-06,10,11,9,10,100
2020-01-02,10,11,9,10,100
2020-01-03,10,11,9,10,100
2020-01-03,10,11,9,10.5,100
2020-01-07,,11,9,10,100
2020-01-08,10,11,9,-1,100
2020-01-09,10,9,11,10,100
2020-01-10,10,11,9,10,0
2020-01-13,10,10.5,9,11,100
2020-01-14,10,11,9,10,100
"""
    frame, report = read_csv(write(tmp_path, "dirty.csv", text))
    assert report.unsorted == 1
    assert report.duplicates == 1
    assert report.nan == 1
    assert report.nonpositive == 1
    assert report.high_below_low == 1
    assert report.zero_volume == 1
    assert report.clamped == 1  # close 11 above high 10.5: high widened to 11
    assert frame["date"].is_monotonic_increasing
    assert len(frame) == 5
    assert frame.loc[frame["date"] == "2020-01-03", "close"].item() == 10.5  # last kept
    assert frame.loc[frame["date"] == "2020-01-13", "high"].item() == 11
    assert "duplicates 1" in str(report)


@pytest.mark.parametrize("text, row, words", [
    ("Date,Open,High,Low,Close\n2020-01-02,1,1,1,1\n2020-01-03,1,1,1,abc\n", 3, "close"),
    ("Date,Open,High,Low,Close\n2020-01-02,1,1,1,1\n2020-13-45,1,1,1,1\n", 3, "date"),
    ("Date,Open,Volume\n2020-01-02,1,5\n", 1, "no Close column"),
    ("", 1, "empty file"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,1,7,8\n", 3, "malformed"),
    # blank lines count as file lines (pandas would skip them and shift the numbers)
    ("Date,Close\n2020-01-02,1\n\n\n2020-01-03,x\n", 5, "close is not a number"),
    ("Date,Close\n\n2020-01-02,1\n\n2020-13-45,1\n", 5, "cannot parse date"),
    ("Date,Close\n2020-01-02,1\n\n2020-01-03,1,7,8\n", 4, "malformed"),
    ("Date,Close\n2020-01-02,1\n\n2020-01-03,1\n\"2020-01-04,1\n2020-01-05,1\n", 5,
     "EOF inside string"),
])
def test_unusable_files_name_the_file_and_row(tmp_path, text, row, words):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as info:
        read_csv(path)
    assert info.value.path == path and info.value.row == row
    assert f"{path}: row {row}:" in str(info.value)
    assert words.lower() in str(info.value).lower()


@pytest.mark.parametrize("fmt", ["%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y"])
def test_day_first_and_month_first_dates_are_told_apart(tmp_path, fmt):
    days = pd.bdate_range("2012-01-02", periods=30)  # crosses day 13
    text = "Date,Close\n" + "".join(f"{d.strftime(fmt)},{i + 1}\n" for i, d in enumerate(days))
    frame, _ = read_csv(write(tmp_path, "d.csv", text))
    assert list(frame["date"]) == list(days)


def test_dates_with_no_day_above_12_are_read_in_the_order_that_runs_forward(tmp_path):
    # 02.01 .. 12.01 day-first is 2..12 January in order; month-first jumps month to month
    text = "Date,Close\n02.01.2012,1\n05.01.2012,2\n11.01.2012,3\n12.01.2012,4\n03.02.2012,5\n"
    frame, _ = read_csv(write(tmp_path, "d.csv", text))
    assert [str(d.date()) for d in frame["date"]] == [
        "2012-01-02", "2012-01-05", "2012-01-11", "2012-01-12", "2012-02-03"]


def test_truly_ambiguous_dates_are_an_error_not_a_guess(tmp_path):
    path = write(tmp_path, "amb.csv", "Date,Close\n01.02.2012,1\n01.03.2012,2\n")
    with pytest.raises(DataError, match="amb.csv: ambiguous dates such as '01.02.2012'"):
        read_csv(path)


def test_blank_lines_are_counted_as_missing_rows(tmp_path):
    frame, report = read_csv(write(tmp_path, "b.csv", "Date,Close\n2020-01-02,1\n\n  \n"
                                                       "2020-01-03,2\n"))
    assert list(frame["close"]) == [1.0, 2.0]
    assert report.nan == 2 and report.duplicates == 0


def test_korean_cp949_and_latin1_files_are_read(tmp_path):
    korean = tmp_path / "005930.csv"
    korean.write_bytes(YAHOO.replace("Date,Open,High,Low,Close,Adj Close,Volume",
                                     "일자,시가,고가,저가,종가,수정종가,거래량").encode("cp949"))
    frame, _ = read_csv(str(korean))
    assert list(frame["close"]) == [10.2, 10.4, 10.8] and list(frame["volume"])[0] == 1000
    latin = tmp_path / "note.csv"
    latin.write_bytes("Date,Close,Note\n2020-01-02,5,Société\n2020-01-03,6,né\n"
                      .encode("latin-1"))
    assert list(read_csv(str(latin))[0]["close"]) == [5.0, 6.0]


def test_binary_and_directory_named_csv_are_one_data_error(tmp_path):
    from stockpred.cache import source_identity
    from stockpred.config import DataConfig

    binary = tmp_path / "bin" / "RANDOM.csv"
    binary.parent.mkdir()
    binary.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="RANDOM.csv: binary file"):
        read_csv(str(binary))
    folder = tmp_path / "dir" / "X.csv"
    folder.mkdir(parents=True)
    with pytest.raises(DataError, match="X.csv: cannot read"):
        read_csv(str(folder))
    with pytest.raises(DataError, match="X.csv: cannot read"):  # the cache key hashes files
        source_identity(DataConfig(source="csv", dir=str(folder.parent)))
    assert datacli.main(["inspect", str(binary.parent)]) == 2


def test_split_detection_finds_a_planted_split(tmp_path):
    (_, frame), = synthetic_market(1, 400, seed=3, signal=0.0)
    assert detect_splits(frame) == []  # this ticker has no split of its own
    day = 250
    planted = frame.copy()
    planted.loc[day:, ["open", "high", "low", "close"]] /= 2.0
    planted.loc[day:, "volume"] *= 2.0
    yahoo = planted.rename(columns=str.title)
    path = tmp_path / "SPLIT.csv"
    yahoo.to_csv(path, index=False, date_format="%Y-%m-%d")
    loaded, _ = read_csv(str(path))
    (event,) = detect_splits(loaded)
    assert event.date == str(frame["date"].iloc[day].date())
    assert event.label == "2:1" and event.ratio == 2.0
    adjusted = data.adjust_splits(loaded, [event])
    assert np.allclose(adjusted["close"], frame["close"] / 2.0, rtol=1e-5)  # today's scale
    assert np.allclose(adjusted["volume"], frame["volume"] * 2.0, rtol=1e-5)


def test_a_crash_traded_through_the_day_is_not_a_split():
    dates = pd.bdate_range("2020-01-01", periods=60)
    close = np.full(60, 100.0) * np.exp(np.random.default_rng(0).normal(0, 0.01, 60))
    frame = pd.DataFrame({"date": dates, "open": close, "high": close * 1.01,
                          "low": close * 0.99, "close": close})
    frame.loc[30:, ["open", "high", "low", "close"]] /= 2.0
    frame.loc[30, "open"] = close[29]  # opens at the old level, sells off to half
    frame.loc[30, "high"] = close[29] * 1.01
    assert detect_splits(frame) == []
    assert len(detect_splits(frame.drop(columns=["open", "high", "low"]))) == 1


def test_synthetic_splits_are_all_found():
    market = synthetic_market(60, 600, seed=1)
    found = sum(len(detect_splits(frame)) for _, frame in market)
    jumps = sum(int(np.any(np.abs(np.diff(np.log(frame["close"]))) > 0.35))
                for _, frame in market)
    assert found == jumps > 0


def test_inspect_prints_rows_dates_gaps_and_splits(tmp_path, capsys):
    (_, frame), = synthetic_market(1, 300, seed=3, signal=0.0)
    frame.loc[200:, ["open", "high", "low", "close"]] /= 3.0
    gap_days = (frame["date"].iloc[110] - frame["date"].iloc[99]).days
    frame = frame.drop(index=range(100, 110))  # ten trading days missing
    frame.rename(columns=str.title).to_csv(tmp_path / "AAA.csv", index=False)
    assert datacli.main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AAA.csv: rows 290" in out
    assert gap_days > 14 and f"gaps 1 (longest {gap_days} days)" in out
    assert f"suspected splits: {frame['date'].loc[200].date()} 3:1" in out


def test_inspect_of_a_bad_file_exits_2_naming_it(tmp_path, capsys):
    write(tmp_path, "bad.csv", "Date,Close\n2020-01-02,x\n")
    assert datacli.main(["inspect", str(tmp_path)]) == 2
    assert "bad.csv: row 2: close is not a number" in capsys.readouterr().err


def test_inspect_reports_every_bad_file_and_goes_on(tmp_path, capsys):
    write(tmp_path, "A_BAD.csv", "Date,Close\n2020-01-02,x\n")
    write(tmp_path, "B_GOOD.csv", "Date,Close\n2020-01-02,1\n2020-01-03,2\n")
    write(tmp_path, "C_BAD.csv", "Date,Open\n2020-01-02,1\n")
    assert datacli.main(["inspect", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "B_GOOD.csv: rows 2" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "A_BAD.csv: row 2: close is not a number" in lines[0]
    assert "C_BAD.csv: row 1: no Close column" in lines[1]


def test_discovery_takes_csv_and_tsv_in_any_case_and_counts_the_rest(tmp_path):
    for name in ("A.CSV", "B.Tsv", "c.csv"):
        write(tmp_path, name, YAHOO.replace(",", "\t") if name.lower().endswith(".tsv") else YAHOO)
    write(tmp_path, "README.txt", "prices from somewhere\n")
    write(tmp_path, "notes.md", "# notes\n")
    write(tmp_path, ".DS_Store", "junk")
    tickers = data.load_dir(str(tmp_path), adjust=False)
    assert [t.name for t in tickers] == ["A", "B", "c"]
    assert data.ignored_note(str(tmp_path)) == (
        "2 files ignored (not .csv or .tsv): README.txt, notes.md")


def test_unparsable_dates_are_one_line_without_pandas_warnings(tmp_path):
    import subprocess
    import sys

    write(tmp_path, "CLOSE.csv", "Close\n184.07\n186.97\n185.39\n")
    proc = subprocess.run([sys.executable, "-m", "stockpred.data", "inspect", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'CLOSE.csv'}: row 2: cannot parse date '184.07'"]


@pytest.mark.parametrize("symbol, installed, expected", [
    ("005930", {"yfinance", "fdr"}, ("fdr", "005930")),  # KRX code: FDR when it is there
    ("005930", {"yfinance"}, ("yfinance", "005930.KS")),
    ("005930", {"fdr"}, ("fdr", "005930")),
    ("AAPL", {"yfinance", "fdr"}, ("yfinance", "AAPL")),
    ("AAPL", {"fdr"}, ("fdr", "AAPL")),
    ("005930.KQ", {"yfinance", "fdr"}, ("yfinance", "005930.KQ")),
])
def test_download_routes_krx_codes_to_finance_data_reader(symbol, installed, expected):
    assert download.downloader_for(symbol, installed) == expected


def test_download_routing_without_a_downloader_is_a_data_error():
    with pytest.raises(DataError, match="pip install yfinance"):
        download.downloader_for("AAPL", set())


def test_download_without_a_downloader_says_what_to_install(capsys):
    import importlib.util

    if importlib.util.find_spec("yfinance") or importlib.util.find_spec("FinanceDataReader"):
        pytest.skip("a downloader is installed; this test is about its absence")
    assert datacli.main(["download", "AAPL"]) == 2
    assert "pip install yfinance" in capsys.readouterr().err


def test_synth_writes_yahoo_csvs_that_load_back(tmp_path):
    assert datacli.main(["synth", str(tmp_path), "--tickers", "2", "--days", "120"]) == 0
    tickers = data.load_dir(str(tmp_path), adjust=False)
    assert [t.name for t in tickers] == ["SYN0000", "SYN0001"]
    (_, frame), _ = synthetic_market(2, 120, seed=0)
    np.testing.assert_allclose(tickers[0].frame["close"], frame["close"], rtol=1e-5)
