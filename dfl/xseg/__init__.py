"""XSeg masks in facesets: labelling faces (the editor), applying a mask model, removing and fetching.

DFL's "5.XSeg" steps.  The labels (``seg_ie_polys``) and masks (``xseg_mask``) live in each face's
metadata (:mod:`dfl.faceset.record` reads and writes them exactly as DFL does); this package edits them
(:mod:`~dfl.xseg.editor` state machine, :mod:`~dfl.xseg.draw` picture, :mod:`~dfl.xseg.session` window and
saving), runs a :class:`~dfl.xseg.predictor.MaskPredictor` over a faceset (:mod:`~dfl.xseg.tools`) and
finds the predictor to use (:mod:`~dfl.xseg.predictor`).
"""
