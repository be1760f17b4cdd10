"""Reporting: tables and figures of recorded runs, never rerunning training.

==================  ==========================================================================
``records``         reading a run folder (run.json, metrics.csv), checked before it is trusted
``rows``            one row per run (summary.csv's columns), the per-epoch curves
``methods``         each method's role, label, style and order (declared on its Solver class)
``tables``          the mean ± std table of every run group and its cells
``sweeps``          the table per variant of a sweep
``stats``           paired differences to the control with their 95% intervals
``verdict``         the verdict table under the named presets
``budget``          the verdict at chosen epochs, and the difference to the control by epoch
``summary``         ``tssm summary``: summary.csv and summary.md
``inputs``          checks of a reporting command's input (one line, exit 2)
``figdata``         what figures draw from, read once
``style``, ``curves``, ``levels``   shared layout, curve drawing and the axis of n
``figure1`` ... ``budget_figure``    one module per figure
``figures``         ``tssm figures``: every figure of a results folder
==================  ==========================================================================
"""
