"""Inference on your own images and videos (``predict.py``), above the engine: checkpoint loading,
face sampling and tracking, batched scoring, CSV writing, aggregation and visualisation.

Imports only downward (utils, models, data, evaluation, engine, methods); nothing in the core imports it.
"""
