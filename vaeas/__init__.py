"""vaeas: posterior collapse in VAEs and VAE-AS (an auxiliary softmax classifier on z).

The public names::

    from vaeas import load_dataset, build_model, VAE, VAEAS, Trainer, evaluate
"""

from .data import DataError, Dataset, Split, batches, load_dataset
from .metrics import (
    active_units,
    classifier_bound,
    code_gain,
    elbo_terms,
    evaluate,
    iw_nll,
    linear_probe,
    mutual_information,
)
from .models import VAE, VAEAS, build_model, model_from_config
from .objectives import Constant, Cyclical, LinearWarmup, make_schedule, total_loss
from .train import Trainer, TrainingError, load_model, resolve_device

__version__ = "0.1.0"

__all__ = [
    "VAE", "VAEAS", "Constant", "Cyclical", "DataError", "Dataset", "LinearWarmup", "Split",
    "Trainer", "TrainingError", "active_units", "batches", "build_model", "classifier_bound",
    "code_gain", "elbo_terms", "evaluate", "iw_nll", "linear_probe", "load_dataset", "load_model",
    "make_schedule", "model_from_config", "mutual_information", "resolve_device", "total_loss",
    "__version__",
]
