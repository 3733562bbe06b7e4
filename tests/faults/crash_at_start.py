"""Crashes at start, the way a broken environment does."""

import sys

print("loading the dataset...", flush=True)
sys.exit("FileNotFoundError: /data/prices does not exist")
