"""Preprocess raw videos into DeepfakeBench's layout (frames, landmarks, masks, index JSON).

Modules: ``video`` (evenly spaced frames), ``faces`` (detectors and landmark predictors),
``crop`` (the x1.3 square face crop), ``layout`` (where each dataset's videos are, official splits),
``pipeline`` (per-video jobs, the process pool, resumability, the summary). Entry point:
``scripts/preprocess.py`` (config ``conf/preprocess.yaml``).
"""
