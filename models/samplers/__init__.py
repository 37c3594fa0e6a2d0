"""Samplers: pure functions (model, x_init, schedule, cond, generator) -> x."""
