"""farm: a Ray-based generation farm for machine-learning fast simulation in high-energy physics."""

__version__ = "0.1.0"
