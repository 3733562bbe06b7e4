"""Files that run inside trial processes; stdlib only (see _gpusweep_child)."""
