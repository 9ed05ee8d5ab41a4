# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of a mixture_ray run
#
# Open the stores of a finished run (the demo's `demo_out/` by default; set `MIXTURE_RAY_RUN` to
# another run folder), plot one slide's finding map and read the cohort statistics. Every store
# opens with its committed rows only. Open it in Jupyter with jupytext (`pip install jupytext`),
# or run it as a script: `python notebooks/demo_tour.py`.

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mixture_ray import api

RUN = Path(os.environ.get("MIXTURE_RAY_RUN", "demo_out"))
ANALYSIS = RUN / "analysis"
FIGURES = Path(os.environ.get("MIXTURE_RAY_TOUR_OUT", RUN / "tour"))
FIGURES.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The tile store: which slides and cases, how many tiles

# %%
tiles = api.read_store(ANALYSIS / "tiles", columns=["slide_id", "case_id", "x", "y", "magnification"])
tiles_per_slide = tiles.groupby("slide_id").size()
print(f"{len(tiles)} tiles of {tiles['slide_id'].nunique()} slides and {tiles['case_id'].nunique()} cases")
tiles_per_slide.describe()

# %% [markdown]
# ## Predicted findings, and one slide's finding map

# %%
predictions = api.read_store(ANALYSIS / "predictions",
                             columns=["slide_id", "case_id", "x", "y", "finding", "confidence"])
finding_share = predictions["finding"].value_counts(normalize=True).sort_index()
print(finding_share.round(3).to_string())

slide = str(predictions["slide_id"].value_counts().idxmax())  # the slide with the most tiles
one = predictions[predictions["slide_id"] == slide]
findings = sorted(predictions["finding"].unique())
fig, ax = plt.subplots(figsize=(5, 5))
for i, name in enumerate(findings):
    rows = one[one["finding"] == name]
    ax.scatter(rows["x"], rows["y"], s=12, marker="s", color=f"C{i}", label=name)
ax.invert_yaxis()
ax.set(title=f"{slide}: predicted finding per tile", xlabel="x (level 0 px)", ylabel="y (level 0 px)")
ax.legend(fontsize=7, loc="best")
map_png = FIGURES / f"finding_map_{slide}.png"
fig.savefig(map_png, dpi=80)
plt.close(fig)
print(f"finding map of {slide}: {len(one)} tiles -> {map_png}")

# %% [markdown]
# ## The embeddings as an AnnData (for scanpy)

# %%
magnification = float(tiles["magnification"].max())
embeddings = api.read_embeddings(ANALYSIS / "embeddings", magnification=magnification)
print(embeddings)

# %% [markdown]
# ## The same store as a Ray Dataset (for work larger than memory)

# %%
dataset = api.store_dataset(ANALYSIS / "predictions", columns=["slide_id", "finding"])
print(f"Ray Dataset of {dataset.count()} predictions")

# %% [markdown]
# ## The cohort statistics

# %%
summary = json.loads((ANALYSIS / "stats" / "summary.json").read_text())
best = summary["best_integrated"]
print(f"{summary['n_cases']} cases ({summary['n_test']} test): best integrated model "
      f"{best['feature_set']} {best['model']}, AUC {best['auc']:.2f} "
      f"(CI {best['ci_low']:.2f}-{best['ci_high']:.2f})")
for sentence in summary.get("sentences", []):
    print(" ", sentence)
