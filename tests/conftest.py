import os
import tempfile

import pytest
import torch

from tssm.config import RunConfig

# Runs that record to MLflow without naming a store go to a store of this test session's own
# (never the user's store, never one that another pytest running beside this one writes).
_STORE = tempfile.mkdtemp(prefix="tssm-tests-")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE}/mlflow.db"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def digits_cfg(tmp_path):
    """A quick digits config: small MLP so each epoch takes a fraction of a second."""

    made = []

    def make(**kw):
        # each config its own folder (a run folder belongs to one config): run, run2, run3 ...
        made.append(None)
        out = tmp_path / ("run" if len(made) == 1 else f"run{len(made)}")
        base = dict(dataset="digits", model="mlp", width=64, depth=6, epochs=2, out=str(out),
                    mlflow=False, checkpoint=False, threads=1)
        base.update(kw)
        return RunConfig.from_dict(base)

    return make
