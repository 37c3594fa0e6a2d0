"""`farm train`: models' fit() run by Ray Train's TorchTrainer (DDP), tracked and registered in MLflow.

Modules: `driver` (run_training: resume index, MLflow run, Ray Train, registration), `data` (the
data preparation train and tune share), `trainer` (the TorchTrainer), `worker` (per-rank worker
functions and their report), `teacher` (distillation teachers from the registry), `register` (the
registration train and tune share), `mlflow_run` (run parameters and the resume index).
"""

from farm.train.driver import TrainResult, run_training
from farm.train.worker import FAULT_ENV

__all__ = ["FAULT_ENV", "TrainResult", "run_training"]
