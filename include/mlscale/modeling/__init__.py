"""Data Scientist: features from the marts, time split, candidate search and calibration, baselines (binned mean,
BG/NBD, Gamma-Gamma), metrics and plots, lineage, the model card, artifact hashes, drift reference profiles."""
