"""Model analysis: parameter and MAC accounting (``accounting``), theoretical receptive
fields (``receptive_field``), effective receptive fields (``erf``) and the per-layer table
that joins them (``summary``)."""
