"""The GPU behind one small interface: NVML (or a stand-in) read once per question."""
