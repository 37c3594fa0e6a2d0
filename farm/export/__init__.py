"""A registered model as one graph (noise, conditions) -> events in physical units (ONNX, TorchScript).

For simulation frameworks that run ML models in C++ through ONNX Runtime or LibTorch (Geant4's
Par04 example, key4hep's DDML): `export_model` writes model.onnx or model.pt, card.json,
reference.npz and check.py into a new folder, all at once.
"""

from __future__ import annotations

from farm.export.graph import EXPORT_FORMATS, ExportResult, export_model

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_model"]
