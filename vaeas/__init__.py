"""vaeas: posterior collapse in VAEs and VAE-AS (an auxiliary softmax classifier on z).

The public names::

    from vaeas import load_dataset, build_for_dataset, Trainer, evaluate, diagnose

The reporting layer (pandas) is imported on demand: ``from vaeas import results, report``.
"""

from .data import DATASETS, DataError, Dataset, Split, batches, gaussian_dataset, load_dataset
from .diagnose import Diagnosis, diagnose
from .metrics import (
    LatentVariableModel,
    active_units,
    classifier_bound,
    code_gain,
    elbo_terms,
    evaluate,
    iw_nll,
    latent_r2,
    linear_probe,
    mutual_information,
)
from .models import VAE, VAEAS, SequenceVAE, SequenceVAEAS, build_for_dataset, build_model, model_from_config
from .objectives import Constant, Cyclical, LinearWarmup, make_schedule, total_loss
from .posterior import true_posterior, true_posterior_means
from .train import ResumeMismatch, Trainer, TrainingError, load_model, resolve_device

__version__ = "0.2.0"

__all__ = [
    "DATASETS", "VAE", "VAEAS", "Constant", "Cyclical", "DataError", "Dataset", "Diagnosis",
    "LatentVariableModel", "LinearWarmup", "ResumeMismatch", "SequenceVAE", "SequenceVAEAS", "Split",
    "Trainer", "TrainingError", "active_units", "batches", "build_for_dataset", "build_model",
    "classifier_bound", "code_gain", "diagnose", "elbo_terms", "evaluate", "gaussian_dataset", "iw_nll",
    "latent_r2", "linear_probe", "load_dataset", "load_model", "make_schedule", "model_from_config",
    "mutual_information", "resolve_device", "total_loss", "true_posterior", "true_posterior_means", "__version__",
]
