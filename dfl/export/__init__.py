"""Trained models leaving dfl (layer 9): DeepFaceLive's ``.dfm`` export and its runtime.

:mod:`dfl.export.trained` is the one place this package and :mod:`dfl.live` reach the model store;
:mod:`dfl.export.dfm` writes and checks ``.dfm`` files (ONNX graphs with DFL's names);
:mod:`dfl.export.runtime` runs them with onnxruntime as a merge predictor.
"""
