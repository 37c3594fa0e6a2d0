"""Shower and jet files: CaloChallenge HDF5, Parquet, JetNet HDF5, read through one reader."""
