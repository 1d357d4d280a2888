"""Training curricula that wrap any single-frame detector (DFFC, DIH, BabyStep): the wrapper method
(:class:`Curriculum`, built by the engine from ``curriculum._target_``), the hardness table, the pacing
and the hardness report (figures and Table 4's metrics)."""

from detect.methods.curriculum.wrapper import Curriculum

__all__ = ["Curriculum"]
