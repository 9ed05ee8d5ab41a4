"""k-means over embeddings behind one engine interface (scikit-learn on CPU, cuML on GPU)."""

from mixture_ray.cluster.engines import KMeansFit, get_kmeans_engine
from mixture_ray.store.clusterings import nearest_centroid

__all__ = ["KMeansFit", "get_kmeans_engine", "nearest_centroid"]
