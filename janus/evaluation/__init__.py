"""From score vectors to results: aggregation, metrics, the evaluate step and the tables and
figures.
"""
