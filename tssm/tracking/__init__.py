"""MLflow tracking: the store (:mod:`.store`), the experiment (:mod:`.experiment`) and one
run's record (:mod:`.recorder`). MLflow is the index for browsing; the run folders' files are
the record the pipeline depends on."""
