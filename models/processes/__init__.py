"""Generative processes: each wraps a network and owns its loss and samplers."""
