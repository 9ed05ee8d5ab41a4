"""`mixture-ray stats`: cohort statistics on the driver (no Ray needed).

Per-case finding frequencies + a clinical table -> diagnosis prediction (random forest and SVM,
ROC AUC with DeLong CIs and paired tests, non-integrated baseline), survival (Kaplan-Meier by
predicted class, log-rank, Cox per finding, multivariable Cox without collinear findings,
proportional-hazards check, subgroups), plots and a self-contained HTML report.
Entry point: :func:`mixture_ray.stats.stage.run`.
"""
