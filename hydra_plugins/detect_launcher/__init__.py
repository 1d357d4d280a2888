"""Hydra plugin package: detect's resumable submitit launchers."""
