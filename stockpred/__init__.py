"""stockpred: the CUDA stock-price model that gpusweep's sweeps tune."""
