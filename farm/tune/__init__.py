"""`farm tune`: hyperparameter searches with Ray Tune (Optuna TPE + ASHA), tracked and registered.

Modules: `search` (run_search, resume_search: the driver), `trial` (one trial: the `farm train`
TorchTrainer reporting to Tune), `tracker` (the driver's Tune callback: table, child runs),
`asha` (ASHA whose rungs survive a resume), `records` (search.json and trials.json).
"""

from farm.tune.records import other_metrics, trials_csv
from farm.tune.search import TuneResult, resume_search, run_search, search_status
from farm.tune.tracker import INTERRUPT_ENV
from farm.tune.trial import SEARCH_TAG, TRIAL_TAG

__all__ = [
    "INTERRUPT_ENV",
    "SEARCH_TAG",
    "TRIAL_TAG",
    "TuneResult",
    "other_metrics",
    "resume_search",
    "run_search",
    "search_status",
    "trials_csv",
]
