"""Coming from DeepFaceLab: DFL's model folders and weight files, read safely and turned into dfl's.

``model_import`` lists and imports a DFL ``workspace/model`` folder (SAEHD, AMP, Quick96) into dfl's model
store; ``dfl_models`` holds the per-model tables (networks, option names); ``xseg`` loads DFL's trained or
generic XSeg weights into dfl's XSeg network.  The weight-file format itself is :mod:`dfl.leras`.
"""
