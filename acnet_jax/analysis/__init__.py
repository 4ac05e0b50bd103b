"""The paper's analyses of trained runs.

    skeleton   kernel regions (skeleton, corners, border), magnitudes and pruning of deploy kernels
    report     one run's numbers (magnitudes, pruning, robustness) and the report of several
    plots      the figures, drawn from the report's numbers
"""
