"""The JANUS model: network, flow-matching paths, data loading, training, checkpoints and
scoring.
"""
