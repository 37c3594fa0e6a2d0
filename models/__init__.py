"""Pure-PyTorch generative models for fast simulation: processes, samplers, networks, training loop.

Never imports Ray or MLflow.
"""
