"""Interactions and their text: the first stage of the pipeline.

- ``dataset``  RecBole atomic files (MovieLens-100k from the ``recbole`` wheel, or your own), the
               chronological leave-one-out split
- ``prompts``  the one place that turns items and histories into text (and the first-token prefix)

Imports: core.
"""
