"""k-means over embeddings behind one engine interface (scikit-learn on CPU, cuML on GPU)."""

from mixture_ray.cluster.engines import KMeansFit, get_kmeans_engine

__all__ = ["KMeansFit", "get_kmeans_engine"]
