"""MLflow tracking: the store (:mod:`.store`), the experiment (:mod:`.experiment`), one run's
record (:mod:`.recorder`), a pipeline config as a study of parent and child runs
(:mod:`.study`) and the UI launcher (:mod:`.ui`, ``python -m tssm.tracking.ui``). MLflow is
the index for browsing; the run folders' files are the record the pipeline depends on."""
