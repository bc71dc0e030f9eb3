"""XGBoost + Ray helpers shared by `train_xgboost`, `tune`, `evaluate`, `explain`, `residuals` and `race_features`:
one module per convention, imported by name (`from skills.library.boosting.metrics import score`).

- `params`: the task conventions (objective, eval metrics, primary metric and its direction) and the parameters
  stored with a model, which never hold compute choices (device, threads): a model trained on GPUs scores and
  cross-validates on a laptop.
- `compute`: ONE pure function from cluster resources + settings to workers, CPUs, GPU use, the xgboost `device`,
  Ray Train's ScalingConfig and Tune's trial resources and concurrency; `require_ray` for skills that need Ray.
- `data`: features, task, categories and the deterministic (seeded, stratified) train/validation split and CV folds.
- `saved_model`: a saved booster: loading it, the split convention written into it (so `evaluate` finds the same
  validation rows), its design matrix and predictions.
- `metrics`: scores and ROC / precision-recall curves, without scikit-learn.
- `loop`: the boosting loop in one process: `Monitor` (validation history, early stopping that survives a restart,
  progress every N rounds), `boost` and `fit_local`.
- `checkpoints`, `relay`, `ray_train`: the same loop on Ray Train workers, checkpointed every N rounds (never every
  round, see `checkpoints`), with progress relayed to the driver; `fit_ray` runs it.

This package's `__init__` imports nothing: `params`, `compute` and `data` load without xgboost or Ray, so skill
modules may import them at the top; the others import xgboost (and Ray Train) and are imported inside functions so
that loading the skill registry stays fast.
"""
