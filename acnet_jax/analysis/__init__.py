"""The paper's analyses of trained runs.

skeleton   kernel regions (skeleton, corners, border), magnitudes and pruning of deploy kernels
int8_rounding  what per-channel int8 does to each kernel region (steps, rounding error)
report     one run's numbers (magnitudes, pruning, robustness, int8) and the report of several
plots      the figures, drawn from the report's numbers
"""
