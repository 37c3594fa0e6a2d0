"""Validation: shower/jet features, metrics (value, error) with reference floors, plots, reports.

Modules: shower_features, jet_features, metrics (+ classifier, checks), plots (+ plot_sets),
report (EvaluationResult), evaluate (evaluate_showers, evaluate_jets, evaluate_files), streaming
(shower files larger than memory, read chunk by chunk). docs/validation.md describes them.
"""
