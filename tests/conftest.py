import os

import pytest
import torch

from tssm.config import RunConfig

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:////tmp/tssm-tests-mlflow.db")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def digits_cfg(tmp_path):
    """A quick digits config: small MLP so each epoch takes a fraction of a second."""

    def make(**kw):
        base = dict(dataset="digits", model="mlp", width=64, depth=6, epochs=2, out=str(tmp_path / "run"),
                    mlflow=False, checkpoint=False, threads=1)
        base.update(kw)
        return RunConfig.from_dict(base)

    return make
