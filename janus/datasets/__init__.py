"""Where datasets come from and how they are split: the registry of the paper's datasets, the
downloader, safe archive extraction, the embedded synthetic generator, labelling, and the
per-seed splits.
"""
