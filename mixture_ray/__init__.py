"""mixture_ray: Ray-distributed engine for explainable, human-in-the-loop computational pathology."""

__version__ = "0.1.0"
