"""Training: the loop and its session, the objective that runs a model's recipe, DFL's optimisers, previews,
loss history, distributed and CPU setup.  What is trained is asked of the model's spec (:mod:`dfl.models.registry`)."""
