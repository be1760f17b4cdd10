"""tssm-bench: Tunable Subnetwork Splitting (gsADMM, gsAM) and backprop baselines."""

__version__ = "0.1.0"
