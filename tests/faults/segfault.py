"""Crashes with a real segmentation fault."""

import ctypes

print("about to segfault", flush=True)
ctypes.string_at(0)
