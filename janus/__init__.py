"""JANUS: unsupervised network intrusion detection with mixed continuous-discrete flow matching."""

__version__ = "0.4.0"
