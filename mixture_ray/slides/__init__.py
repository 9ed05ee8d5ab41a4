"""Whole-slide image readers behind one ``SlideReader`` protocol."""

from mixture_ray.slides.factory import available_backends, open_slide
from mixture_ray.slides.magnification import LevelPlan, plan_level
from mixture_ray.slides.reader import SlideReader

__all__ = ["LevelPlan", "SlideReader", "available_backends", "open_slide", "plan_level"]
