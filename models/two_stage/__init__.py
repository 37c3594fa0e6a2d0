"""Two-stage shower models (CaloDREAM, arXiv:2405.09629): an energy stage, then a shape stage."""
