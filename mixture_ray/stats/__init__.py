"""`mixture-ray stats`: cohort statistics on the driver (no Ray needed).

Per-case finding frequencies + a clinical table -> diagnosis prediction (random forest classifier
or regressor and SVM, ROC AUC with DeLong CIs, paired DeLong and stratified bootstrap tests,
non-integrated baseline), survival (Kaplan-Meier by the out-of-fold predicted class of a chosen
model and threshold, log-rank, Cox per finding, multivariable Cox without collinear findings,
proportional-hazards check, subgroups), plots (with the MIXTURE paper's score-by-diagnosis and
finding-correlation figures) and a self-contained HTML report.
Entry point: :func:`mixture_ray.stats.stage.run`.
"""
